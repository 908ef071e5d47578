#!/bin/bash
# Every "kernel-semantics N.M" the code and docs cite resolves to a section
# of the repository's docs/kernel-semantics.md (scripts/check-refs.sh).
# The p2pbuf path argument of the cli tests is not needed here.
exec "$(dirname "$0")/../scripts/check-refs.sh"
