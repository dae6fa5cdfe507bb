#!/usr/bin/env bash
# test-kube.sh — the live API tier: the real sharedlb-controller binary against a real
# kube-apiserver v1.20.2 with etcd and kube-controller-manager (scripts/kube-up.sh, one
# throwaway cluster per test), running as the sharedlb-controller ServiceAccount bound by
# the shipped controller/deploy/rbac.yaml. The tests are controller/tests/live.rs (marked
# #[ignore], so a plain `cargo test` skips them) and controller/tests/live-dashboard.mjs.
#
# Usage: scripts/test-kube.sh [TEST NAME FILTER...]
#
# First builds or verifies the Kubernetes binaries (scripts/kube-build.sh: a second when
# cached, ~6-15 min on a fresh machine). The dashboard check needs dist/
# (scripts/build-dashboard.sh), Debian's Chromium and dashboard/tests' npm packages
# (scripts/setup.sh): scripts/test.sh runs this after those stages. Run by hand without
# dist/, the dashboard part is skipped with a message; under CI=true (or with
# SHAREDLB_LIVE_REQUIRE_DASHBOARD=1) a missing dist/ fails the test instead.
# A failed test keeps its cluster's directory, with every component's and controller's
# log, under target/tmp/live/NAME (printed by the test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/kube-build.sh
if [ "${CI:-}" = true ]; then
  export SHAREDLB_LIVE_REQUIRE_DASHBOARD=1
fi
# One test at a time: each starts a cluster and the machine has 2 cores. The package
# selection is the cargo-test stage's (`--workspace --exclude sharedlb-benches`), not
# `-p sharedlb-controller`: the same feature set, so the test binary that stage built is
# reused instead of the controller's dependencies being compiled a second time (~5 min).
exec cargo test --locked --workspace --exclude sharedlb-benches --test live \
  -- --ignored --test-threads=1 "$@"
