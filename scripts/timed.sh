#!/usr/bin/env bash
# Run one CI suite and say how long it took: `timed.sh NAME COMMAND...`. The summary lines
# ("suite NAME: ok in N s") are also appended to .ci-times for the closing table.
set -uo pipefail
name="$1"; shift
start=$(date +%s)
echo "=== suite ${name}: start $(date -u +%H:%M:%S)"
"$@"
status=$?
elapsed=$(( $(date +%s) - start ))
outcome=$([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")
echo "=== suite ${name}: ${outcome} in ${elapsed} s"
echo "${name} ${outcome} ${elapsed}s" >> .ci-times
exit "$status"
