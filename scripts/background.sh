#!/usr/bin/env bash
# background.sh PREFIX COMMAND [ARGS...] — scripts/test.sh's runner for a stage that runs
# beside the others. Runs COMMAND with its output in PREFIX.log, then writes
# "EXIT WALL_SECONDS CPU_SECONDS" to PREFIX.status. test.sh starts it in a session of its
# own (its CPU time is its own, not that of the stage that happens to be running, and
# test.sh can stop the whole group) holding a lock on PREFIX.lock, inherited as file
# descriptor $SHAREDLB_BG_LOCK_FD; the lock goes when this script ends, so that
# `flock PREFIX.lock true` waits for exactly that, without polling.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
prefix=$1
shift
echo $$ >"$prefix.pid"
start=$SECONDS
# The command does not inherit the lock: a process it leaves behind cannot hold it.
"$@" </dev/null >"$prefix.log" 2>&1 {SHAREDLB_BG_LOCK_FD}>&-
rc=$?
echo "$rc $((SECONDS - start)) $(children_cpu_seconds $$)" >"$prefix.status.tmp"
mv "$prefix.status.tmp" "$prefix.status"
