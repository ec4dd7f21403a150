#!/usr/bin/env bash
# `make test`'s pytest: the stack tier (Docker) runs beside the unit and integration tiers.
#
# The stack tier mostly waits on containers (builds, healthchecks, compose up) while the
# integration tier mostly waits on local programs; side by side on a 2-core machine the
# whole suite took 850 s instead of 1239 s one after the other (docs/TESTING.md). Each
# tier's lines are prefixed with its name; each prints its own slowest tests; the exit
# code is non-zero if either tier failed. Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

run() {  # name, then pytest's arguments: lines prefixed (and kept in $LOGS), pytest's own exit code kept
    local name=$1; shift
    "$PYTEST" "$@" 2>&1 | sed -u "s/^/[$name] /" | tee "$LOGS/$name"
    return "${PIPESTATUS[0]}"
}

run stack tests/stack "$@" &
stack=$!
# a background job ignores Ctrl-C in a script: stop the stack tier's pytest (the job's child) with the rest
trap 'pkill -TERM -P "$stack" 2>/dev/null; wait "$stack"; exit 130' INT TERM
run local tests/unit tests/integration "$@"
local_rc=$?
wait "$stack"
stack_rc=$?
trap - INT TERM
# the tiers' lines interleave and a CI log may show only its tail: each tier's failures again, last
grep -hE '^\[(local|stack)\] (FAILED|ERROR) ' "$LOGS/local" "$LOGS/stack" || true
echo "test tiers: unit+integration exit $local_rc, stack exit $stack_rc"
[ "$local_rc" -eq 0 ] && [ "$stack_rc" -eq 0 ]
