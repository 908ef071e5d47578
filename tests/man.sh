#!/bin/bash
# Every public (P2P_API) function has a man page man/<name>.3, and every
# page names only declared functions (scripts/check-man.sh).
# The p2pbuf path argument of the cli tests is not needed here.
exec "$(dirname "$0")/../scripts/check-man.sh"
