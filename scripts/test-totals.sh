#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The closing line of `make test`: the sum of the VM stages' closing
# "N passed, M failed" lines (each file is one stage's KTAP output).
set -euo pipefail

passed=0 failed=0
for f in "$@"; do
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$f" | tail -1) ||
		{ echo "# $(basename "$f" .ktap): no closing line"; line="0 passed, 1 failed"; }
	echo "# $(basename "$f" .ktap): $line"
	read -r p _ f_ _ <<<"${line//,/}"
	passed=$((passed + p)) failed=$((failed + f_))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
