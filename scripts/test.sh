#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every test and doctest.
# PROPTEST_CASES defaults to 2000 per property here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo bench --no-run (benchmarks compile; they are not run as tests)"
cargo bench --workspace --locked --no-run
echo "== dashboard: Trunk build, then the page in headless Chromium"
[ -x /usr/bin/chromium ] || { echo "Chromium missing: run scripts/setup.sh first" >&2; exit 1; }
[ -d dashboard/tests/node_modules ] || (cd dashboard/tests && npm ci --no-audit --no-fund --loglevel=error)
scripts/build-dashboard.sh
node dashboard/tests/e2e.mjs dist target/e2e
echo "== cargo test (PROPTEST_CASES=$PROPTEST_CASES)"
cargo test --workspace --locked
