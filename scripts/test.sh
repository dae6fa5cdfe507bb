#!/usr/bin/env bash
# The project's test command (README): installs what it needs (idempotently), then
# formatting, lints, the dashboard in a browser, every test and doctest. Ends with a timing
# summary of its stages, also when one fails. PROPTEST_CASES defaults to 2000 per property.
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
fi

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

tick=$(getconf CLK_TCK)
cpu_seconds() { # user + system seconds of this shell's finished children (/proc: cutime, cstime)
  local stat
  stat=$(</proc/$$/stat)
  set -- ${stat##*) }
  echo $(((${14} + ${15}) / tick))
}

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

summary() {
  local rc=$? line name secs cpu status total=0 passed=0 failed=0
  [ -z "$current" ] || [ "$rc" -eq 0 ] ||
    timings+=("$current|$((SECONDS - current_start))|-|interrupted")
  echo
  echo "== timing summary (stage: wall seconds, CPU seconds)"
  for line in "${timings[@]}"; do
    IFS='|' read -r name secs cpu status <<<"$line"
    total=$((total + secs))
    [ "$status" = ok ] && passed=$((passed + 1)) || failed=$((failed + 1))
    printf '  %-20s %6s %6s  %s\n' "$name:" "$secs" "$cpu" "$status"
  done
  printf '  %-20s %6s         (%dm%02ds)\n' "total:" "$total" $((total / 60)) $((total % 60))
  echo "stages: $passed passed, $failed failed"
}
trap summary EXIT

# --- the stages ----------------------------------------------------------------------------------
# Add a stage here: `stage NAME COMMAND [ARGS...]` (a longer one as a function above the
# stages). Its time appears in the summary.
stage setup scripts/setup.sh
stage fmt cargo fmt --all --check
# --all-targets type-checks the benches too; they are not run as tests.
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
stage dashboard-tools scripts/build-dashboard.sh --tools-only
stage dashboard-build scripts/build-dashboard.sh
# The benches' code is type-checked by clippy above; their criterion harness is not built.
stage cargo-test cargo test --workspace --locked --exclude sharedlb-benches
# The browser test compares the page with the CLI's answer: the binary `cargo test` built.
export SHAREDLB_SIM="${CARGO_TARGET_DIR:-target}/debug/sharedlb-sim"
stage dashboard-e2e node dashboard/tests/e2e.mjs dist target/e2e
# >>> Further tiers go here, e.g. the live API tier against a real kube-apiserver:
stage kube-live scripts/test-kube.sh
