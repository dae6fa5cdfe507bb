#!/usr/bin/env bash
# Installs what the tests need and a fresh machine of this kind lacks: rustfmt and clippy
# (normally present), Debian's Chromium for the browser tests, the browser test's npm
# packages, and every Debian package of the later steps (the wasm toolchain's, the
# kube-apiserver build's), so that no apt runs beside another. Trunk, wasm-bindgen-cli
# and kube-apiserver themselves are built by scripts/build-dashboard.sh and
# scripts/kube-build.sh. Idempotent: when all is there it returns in seconds.
# scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
[ -x /usr/bin/chromium ] || apt_install chromium
# npm ci again only when the lock file changed since the last one.
stamp=dashboard/tests/node_modules/.sharedlb-package-lock.json
if ! cmp -s dashboard/tests/package-lock.json "$stamp"; then
  (cd dashboard/tests && npm ci --no-audit --no-fund --loglevel=error)
  cp dashboard/tests/package-lock.json "$stamp"
fi
scripts/build-dashboard.sh --packages-only
scripts/kube-build.sh --packages-only
