#!/usr/bin/env bash
# Builds the dashboard (dashboard/, Leptos) to dist/ with Trunk. Installs what it needs;
# idempotent. Everything it uses is in this repository or comes from package registries.
#
# The wasm32-unknown-unknown toolchain, one of two (the script prints which):
#   rustup  when `rustup target list --installed` has wasm32-unknown-unknown (the usual
#           setup: `rustup target add wasm32-unknown-unknown`): plain `trunk build`.
#   debian  otherwise, on Debian where rustup cannot add the target: Debian's rustc-web,
#           cargo-web and rust-web-src build std for wasm32 from source (RUSTC_BOOTSTRAP=1,
#           -Zbuild-std), linked by wasm-ld-19. Only the wasm build uses them: a cargo
#           wrapper on Trunk's PATH sends it there; native builds keep the usual toolchain.
#   SHAREDLB_WASM_PATH=rustup|debian forces one.
# trunk and wasm-bindgen-cli (exactly the Cargo.lock version, as Trunk requires) are built
# once per machine into ${SHAREDLB_CACHE:-~/.cache/sharedlb}/tools and shared by every
# clone. Trunk runs with --offline: the crates are fetched first, nothing is downloaded
# from anywhere but the registries.
#
# Usage: scripts/build-dashboard.sh [--packages-only | --tools-only] [TRUNK BUILD ARGS...]
#   --packages-only  install only the Debian packages the chosen toolchain needs, then stop
#                    (scripts/setup.sh: apt runs before anything runs beside it).
#   --tools-only     install the toolchain and tools, fetch the crates, do not build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. scripts/lib.sh

TRUNK_VERSION=0.21.14
mode=build
case "${1:-}" in
  --tools-only) mode=tools; shift ;;
  --packages-only) mode=packages; shift ;;
esac

# --- which toolchain -----------------------------------------------------------------------
wasm_path=${SHAREDLB_WASM_PATH:-}
if [ -z "$wasm_path" ]; then
  if command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    wasm_path=rustup
  else
    wasm_path=debian
  fi
fi

debian_lib=/usr/lib/rustlib/src/rust/library
# Debian's toolchain for the wasm build only, with std compiled from rust-web-src.
debian_cargo=(env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/wasm-ld-19 /usr/bin/cargo)

case "$wasm_path" in
  rustup)
    echo "dashboard: wasm32 toolchain: rustup's ($(rustc --version)), target wasm32-unknown-unknown installed"
    [ "$mode" != packages ] || exit 0
    # The crates, so that the offline build finds them.
    cargo fetch --locked -q
    ;;
  debian)
    command -v apt-get >/dev/null 2>&1 || {
      echo "dashboard: no wasm32 target: run \`rustup target add wasm32-unknown-unknown\`" >&2
      exit 1
    }
    need=($(missing_debs rustc-web cargo-web rust-web-src lld-19))
    # An older rustc-web than the workspace's rust-version is upgraded.
    min=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
    have=$(/usr/bin/rustc --version 2>/dev/null | awk '{print $2}' || true)
    if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | head -1)" != "$min" ]; then
      need=(rustc-web cargo-web rust-web-src lld-19)
    fi
    apt_install "${need[@]}"
    [ "$mode" != packages ] || exit 0
    echo "dashboard: wasm32 toolchain: Debian's ($(/usr/bin/rustc --version), rust-web-src), std built from source; rustup has no wasm32-unknown-unknown target here"
    # -Zbuild-std compiles std offline from the sources in $debian_lib; their own
    # dependencies (dlmalloc, compiler_builtins, ...) come from crates.io into the same
    # CARGO_HOME as the build. Then the workspace's crates, with the same cargo.
    "${debian_cargo[@]}" fetch --locked -q --manifest-path "$debian_lib/Cargo.toml"
    "${debian_cargo[@]}" fetch --locked -q
    ;;
  *)
    echo "SHAREDLB_WASM_PATH must be rustup or debian, not $wasm_path" >&2
    exit 2
    ;;
esac

# --- trunk and wasm-bindgen-cli, once per machine --------------------------------------------
toolchain_seconds=$SECONDS
wbv=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
tools="$SHAREDLB_CACHE/tools"
wb_root="$tools/wasm-bindgen-cli-$wbv"
trunk_root="$tools/trunk-$TRUNK_VERSION"

has_version() { # BINARY VERSION
  "$1" --version 2>/dev/null | grep -q " $2\$"
}

# cargo_install ROOT CRATE VERSION [ARGS...]: installs into ROOT.tmp, then renames it, so a
# ROOT that exists is complete.
cargo_install() {
  local dest=$1 crate=$2 version=$3
  shift 3
  rm -rf "$dest.tmp"
  # --locked first; a lock that names a version the registry does not serve (seen:
  # webpki-roots 1.0.11 in wasm-bindgen-cli 0.2.130) falls back to a fresh resolution.
  cargo install --root "$dest.tmp" "$crate" --version "=$version" --locked "$@" ||
    {
      echo "dashboard: $crate $version: --locked failed, resolving afresh" >&2
      cargo install --root "$dest.tmp" "$crate" --version "=$version" "$@"
    }
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
}

if ! has_version "$wb_root/bin/wasm-bindgen" "$wbv" ||
  ! has_version "$trunk_root/bin/trunk" "$TRUNK_VERSION"; then
  mkdir -p "$tools"
  (
    flock 9 # another clone may be installing the same tools
    # Their speed does not matter, their build time does: an unoptimised build without
    # debug info, without the default features (TLS for downloads, update checks: Trunk
    # runs offline here), one target directory so that the dependencies they share
    # compile once.
    export CARGO_TARGET_DIR="$tools/.build"
    export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_DEV_INCREMENTAL=false
    export CARGO_PROFILE_DEV_DEBUG_ASSERTIONS=false CARGO_PROFILE_DEV_OVERFLOW_CHECKS=false
    if ! has_version "$wb_root/bin/wasm-bindgen" "$wbv"; then
      echo "dashboard: building wasm-bindgen-cli $wbv into $wb_root"
      cargo_install "$wb_root" wasm-bindgen-cli "$wbv" --debug --no-default-features
    fi
    if ! has_version "$trunk_root/bin/trunk" "$TRUNK_VERSION"; then
      echo "dashboard: building trunk $TRUNK_VERSION into $trunk_root"
      cargo_install "$trunk_root" trunk "$TRUNK_VERSION" --debug --no-default-features
    fi
    rm -rf "$CARGO_TARGET_DIR"
  ) 9>"$tools/.lock"
fi
tools_seconds=$((SECONDS - toolchain_seconds))
echo "dashboard: $("$trunk_root/bin/trunk" --version), $("$wb_root/bin/wasm-bindgen" --version) from $tools"

[ "$mode" != tools ] || exit 0

# --- the build ---------------------------------------------------------------------------------
path="$trunk_root/bin:$wb_root/bin:$PATH"
if [ "$wasm_path" = debian ]; then
  # Trunk calls `cargo` from PATH: this wrapper sends the wasm build to Debian's toolchain
  # with std built from source, and everything else (cargo metadata) to the usual cargo.
  wrap="$root/target/dashboard-tools/bin"
  mkdir -p "$wrap"
  cat >"$wrap/cargo" <<WRAP
#!/usr/bin/env bash
# Written by scripts/build-dashboard.sh.
for a in "\$@"; do
  case "\$a" in
    wasm32-unknown-unknown | --target=wasm32-unknown-unknown)
      exec ${debian_cargo[*]} "\$@" -Zbuild-std=std,panic_abort ;;
  esac
done
exec $(command -v cargo) "\$@"
WRAP
  chmod +x "$wrap/cargo"
  path="$wrap:$path"
fi
build_start=$SECONDS
PATH="$path" trunk build --release --offline "$@"
wasm=$(ls dist/*.wasm)
echo "dashboard: $wasm $(stat -c %s "$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzipped"
echo "dashboard: wall seconds: toolchain and crates $toolchain_seconds, trunk and wasm-bindgen-cli $tools_seconds, wasm build $((SECONDS - build_start))"
