#!/usr/bin/env bash
# The project's test command (README): installs what it needs (idempotently), then
# formatting, lints, the dashboard in a browser, every test and doctest, the live API tier.
# Ends with a timing summary of its stages, also when one fails. PROPTEST_CASES defaults to
# 2000 per property. The builds that need nothing from the workspace's (kube-apiserver,
# the dashboard's tools and wasm) run in the background beside clippy and the tests: on a
# fresh machine the cores are then never idle while one stage links or runs its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
. scripts/lib.sh

# CI runs each time in a fresh clone on the same machine: there the compiled dependencies
# are kept outside the clone, beside the tools, so that a repeat run compiles only the
# workspace's own crates. (Wiped when it passes 20 GiB: cargo never prunes a target dir.)
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$SHAREDLB_CACHE/ci-target"
  if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt 20 ]; then
    rm -rf "$CARGO_TARGET_DIR"
  fi
  echo "CI: target directory $CARGO_TARGET_DIR"
  # Each CI clone has a new path, so the workspace's incremental caches are never reused.
  export CARGO_INCREMENTAL=0
fi
target=${CARGO_TARGET_DIR:-target}
logdir=target/stage-logs # the background stages' logs and status files

# --- stage runner ------------------------------------------------------------------------------
# stage NAME COMMAND [ARGS...]: runs COMMAND (a program or a function defined below) in a
# subshell with `set -e` and records its wall and CPU time (user + system of everything it
# ran: CPU below wall means waiting, for the network or for a machine busy with others);
# the first failing stage ends the run.
timings=() # "name|wall s|cpu s|status"
current=""
current_start=0
current_cpu=0
if [ -n "${SHAREDLB_PRE_SETUP_SECONDS:-}" ]; then # .ci/run's set-up before this script
  timings+=("setup (.ci/run)|$SHAREDLB_PRE_SETUP_SECONDS|-|ok")
fi

cpu_seconds() { children_cpu_seconds $$; }

stage() {
  local name=$1 rc=0
  shift
  echo "== $name: $*"
  current=$name
  current_start=$SECONDS
  current_cpu=$(cpu_seconds)
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  current=""
  local t="$name|$((SECONDS - current_start))|$(($(cpu_seconds) - current_cpu))"
  if [ "$rc" -ne 0 ]; then
    timings+=("$t|FAILED (exit $rc)")
    exit "$rc"
  fi
  timings+=("$t|ok")
}

# --- background stages ---------------------------------------------------------------------
# background NAME COMMAND [ARGS...]: starts COMMAND beside the stages that follow, through
# scripts/background.sh, in a session of its own and holding $logdir/NAME.lock; its output
# goes to $logdir/NAME.log. `await NAME` is the stage that waits for it (flock on that lock:
# no polling); it prints the log (the last lines when the job passed) and records the job's
# own wall and CPU time. A job still running when this script ends is stopped.
bg_names=()
background() {
  local name=$1 lock
  shift
  mkdir -p "$logdir"
  rm -f "$logdir/$name".{log,pid,status}
  echo "== $name: $* (in the background, log $logdir/$name.log)"
  exec {lock}>"$logdir/$name.lock"
  flock "$lock"
  SHAREDLB_BG_LOCK_FD=$lock setsid -f scripts/background.sh "$logdir/$name" "$@"
  exec {lock}>&-
  bg_names+=("$name")
}

await() {
  local name=$1 waited=$SECONDS rc wall cpu
  echo "== $name: waiting for the background stage"
  current=$name
  current_start=$SECONDS
  flock "$logdir/$name.lock" true
  current=""
  if ! read -r rc wall cpu <"$logdir/$name.status" 2>/dev/null; then
    rc=1 wall=- cpu=-
  fi
  waited=$((SECONDS - waited))
  if [ "$rc" -eq 0 ]; then
    tail -n 12 "$logdir/$name.log"
    timings+=("$name (background)|$wall|$cpu|ok, waited for ${waited} s")
  else
    cat "$logdir/$name.log"
    timings+=("$name (background)|$wall|$cpu|FAILED (exit $rc), waited for ${waited} s")
    exit "$rc"
  fi
}

stop_background() {
  local name pid
  for name in "${bg_names[@]}"; do
    [ ! -e "$logdir/$name.status" ] && [ -s "$logdir/$name.pid" ] || continue
    pid=$(<"$logdir/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null && timings+=("$name (background)|-|-|stopped unfinished")
  done
}

summary() {
  local rc=$? line name secs cpu status cpu_total=0 passed=0 failed=0 total
  [ -z "$current" ] || [ "$rc" -eq 0 ] ||
    timings+=("$current|$((SECONDS - current_start))|-|interrupted")
  stop_background
  total=$((SECONDS + ${SHAREDLB_PRE_SETUP_SECONDS:-0}))
  echo
  echo "== timing summary (stage: wall seconds, CPU seconds; background stages overlap the others)"
  for line in "${timings[@]}"; do
    IFS='|' read -r name secs cpu status <<<"$line"
    [ "$cpu" = - ] || cpu_total=$((cpu_total + cpu))
    case "$status" in ok*) passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
    printf '  %-28s %6s %6s  %s\n' "$name:" "$secs" "$cpu" "$status"
  done
  printf '  %-28s %6s %6s  (%dm%02ds wall)\n' "total:" "$total" "$cpu_total" $((total / 60)) $((total % 60))
  echo "stages: $passed passed, $failed failed"
}
trap summary EXIT

# --- the stages ----------------------------------------------------------------------------------
# Add a stage here: `stage NAME COMMAND [ARGS...]` (a longer one as a function above the
# stages). Its time appears in the summary.
stage setup scripts/setup.sh
stage fmt cargo fmt --all --check
# Beside clippy and the tests: builds that use nothing of theirs. The wasm build gets its
# own target directory, so that it never waits for the native builds' lock.
background kube-build scripts/kube-build.sh
background dashboard env CARGO_TARGET_DIR="$target/wasm" scripts/build-dashboard.sh
# --all-targets type-checks the benches too; they are not run as tests.
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# The benches' code is type-checked by clippy above; their criterion harness is not built.
stage cargo-test cargo test --workspace --locked --exclude sharedlb-benches
await dashboard
# The browser test compares the page with the CLI's answer: the binary `cargo test` built.
export SHAREDLB_SIM="$target/debug/sharedlb-sim"
stage dashboard-e2e node dashboard/tests/e2e.mjs dist target/e2e
await kube-build
# The live API tier against a real kube-apiserver (kube-build above made or verified it).
stage kube-live scripts/test-kube.sh
