#!/usr/bin/env bash
# Installs what the tests need and a fresh machine of this kind lacks: rustfmt and clippy
# (normally present), Debian's Chromium for the browser tests, the browser test's npm
# packages. The wasm toolchain, trunk and wasm-bindgen-cli are installed by
# scripts/build-dashboard.sh. Idempotent: when all is there it returns in a second.
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
