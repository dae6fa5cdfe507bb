#!/usr/bin/env bash
# Installs what a fresh machine of this kind lacks for the tests: rustfmt/clippy (normally
# present), Debian's Chromium for the browser tests, the e2e test's npm packages. The wasm
# toolchain, wasm-bindgen-cli and trunk are installed by scripts/build-dashboard.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
fi
(cd dashboard/tests && npm ci --no-audit --no-fund --loglevel=error)
