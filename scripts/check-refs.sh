#!/bin/bash
# Every "kernel-semantics N.M" (or "kernel-semantics section N", or a range
# "N.M-N.K") cited in src/, include/, tests/, man/, docs/, tools/, examples/,
# fuzz/ and README.md must name a section of docs/kernel-semantics.md: a
# heading "## N." or "### N.M", or, in a section without subsections, its
# numbered rule M ("## 7." ... "2. ..." is 7.2).  Prints each citation that
# does not resolve and exits 1 if there is one.
set -u
cd "$(dirname "$0")/.."
ref=docs/kernel-semantics.md
[ -f "$ref" ] || { echo "check-refs: $ref is missing"; exit 1; }
headings=$(grep -oE '^#{2,3} [0-9]+(\.[0-9]+)?' "$ref" | sed -E 's/^#+ //; s/\.$//')
# Numbered rules of sections without subsections, as "N.M".
rules=$(awk '/^## [0-9]+\./ { sec = $2; sub(/\.$/, "", sec); next }
	/^#/ { sec = "" }
	sec != "" && /^[0-9]+\. / { n = $1; sub(/\.$/, "", n); print sec "." n }' "$ref")
has() { grep -qx -- "$1" <<<"$headings" || grep -qx -- "$1" <<<"$rules"; }

bad=0 n=0
while IFS=: read -r file line text; do
	# Each citation on the line: a number, maybe a range "N.M-N.K".
	while read -r cite; do
		[ -n "$cite" ] || continue
		n=$((n + 1))
		for num in ${cite//-/ }; do
			if ! has "$num"; then
				echo "$file:$line: kernel-semantics $num: no such section in $ref"
				bad=1
			fi
		done
	done < <(grep -oE 'kernel-semantics(\.md)?["`]?[ ]+(section )?[0-9]+(\.[0-9]+)?(-[0-9]+(\.[0-9]+)?)?' <<<"$text" |
		grep -oE '[0-9]+(\.[0-9]+)?(-[0-9]+(\.[0-9]+)?)?$')
done < <(grep -rnE 'kernel-semantics(\.md)?["`]?[ ]+(section )?[0-9]' src include tests man docs tools examples fuzz README.md 2>/dev/null)
if [ "$bad" = 0 ]; then
	echo "check-refs: $n citations of kernel-semantics, all resolve to $ref"
fi
exit $bad
