#!/bin/bash
# Every public function (declared P2P_API in include/p2pbuf/*.h) has a man
# page man/<name>.3, and every man/*.3 page is about public functions: the
# names in the NAME section of a page, or the file name of a ".so" link
# page, are all declared P2P_API, a link's target exists and its NAME lists
# the link's name.  Prints one line per problem and exits 1 if there is
# one, else one summary line.
set -u
cd "$(dirname "$0")/.." || exit 1

# Names of the P2P_API functions: comments dropped, then the identifier
# just before the first "(" after each P2P_API (declarations may span
# lines; "#define P2P_API" is not one).
funcs=$(perl -0777 -ne 's{/\*.*?\*/}{}gs; s{^\s*#\s*define\s+P2P_API\b.*$}{}mg;
	while (/\bP2P_API\b[^;{(]*?\b([A-Za-z_]\w*)\s*\(/g) { print "$1\n" }' \
	include/p2pbuf/*.h | sort -u)
[ -n "$funcs" ] || { echo "check-man: no P2P_API function found in include/p2pbuf/*.h"; exit 1; }
declared() { grep -qx -- "$1" <<<"$funcs"; }

# The names in the NAME section of a page: from ".SH NAME" to the next
# ".SH", up to the "\-" that starts the description.
page_names() {
	awk '/^\.SH[ \t]+NAME/ { on = 1; next }
		on && /^\.SH/ { exit }
		on && !/^\.\\"/ { printf "%s ", $0 }' "$1" |
		sed 's/\\-.*//' | tr -s ', ' '\n' | sed '/^$/d'
}

bad=0 pages=0
for f in $funcs; do
	if [ ! -f "man/$f.3" ]; then
		echo "check-man: $f (include/p2pbuf/) has no man/$f.3"
		bad=1
	fi
done
for page in man/*.3; do
	[ -f "$page" ] || continue
	pages=$((pages + 1))
	name=$(basename "$page" .3)
	target=$(sed -n 's/^\.so[ \t]\+man3\/\(.*\)$/\1/p' "$page" | head -1)
	if [ -n "$target" ]; then
		if ! declared "$name"; then
			echo "check-man: $page: $name is not a P2P_API function in include/p2pbuf/*.h"
			bad=1
		fi
		if [ ! -f "man/$target" ]; then
			echo "check-man: $page: links to man/$target, which does not exist"
			bad=1
		elif ! page_names "man/$target" | grep -qx -- "$name"; then
			echo "check-man: $page: links to man/$target, whose NAME does not list $name"
			bad=1
		fi
		continue
	fi
	names=$(page_names "$page")
	if [ -z "$names" ]; then
		echo "check-man: $page: no NAME section"
		bad=1
		continue
	fi
	for n in $names; do
		if ! declared "$n"; then
			echo "check-man: $page: $n (in NAME) is not a P2P_API function in include/p2pbuf/*.h"
			bad=1
		fi
	done
	if ! grep -qx -- "$name" <<<"$names"; then
		echo "check-man: $page: NAME does not list $name"
		bad=1
	fi
done
if [ "$bad" = 0 ]; then
	echo "check-man: $(wc -w <<<"$funcs") P2P_API functions, each with a page; $pages pages in man/, all naming declared functions"
fi
exit $bad
