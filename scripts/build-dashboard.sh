#!/usr/bin/env bash
# Builds the dashboard to dist/ with Trunk on this kind of machine, where rustup cannot add
# the wasm32 target: Debian's rustc-web (via ../shared/tools/setup-wasm.sh, or the same
# packages installed here) builds std for wasm32 from source; wasm-bindgen-cli at the exact
# Cargo.lock version and trunk come from crates.io; Trunk runs offline and finds them on
# PATH. Native builds keep the machine's normal toolchain. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

setup="$root/../shared/tools/setup-wasm.sh"
if [ -x "$setup" ]; then
  eval "$("$setup")"
else
  need=()
  /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]' || need+=(rustc-web cargo-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
  [ -x /usr/bin/wasm-ld-19 ] || need+=(lld-19)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  fi
  export WASM_CARGO="env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/wasm-ld-19 /usr/bin/cargo"
  export WASM_BUILD_STD="-Zbuild-std=std,panic_abort"
fi

tools="$root/target/wasm-tools"
mkdir -p "$tools/bin"
wbv=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -q " $wbv\$"; then
  # --locked first; a lock that names a version the registry no longer serves (seen:
  # webpki-roots 1.0.11 for 0.2.130) falls back to a fresh resolution.
  cargo install --locked --root "$tools" wasm-bindgen-cli --version "=$wbv" \
    || cargo install --root "$tools" wasm-bindgen-cli --version "=$wbv"
fi
if ! "$tools/bin/trunk" --version 2>/dev/null | grep -q "0.21.14"; then
  cargo install --locked --root "$tools" trunk --version 0.21.14
fi

# Trunk calls `cargo`; this wrapper sends wasm builds to the wasm toolchain with std built
# from source and the size-tuned profile, and everything else to the normal cargo.
cat > "$tools/bin/cargo" <<WRAP
#!/usr/bin/env bash
for a in "\$@"; do
  if [ "\$a" = "wasm32-unknown-unknown" ] || [ "\$a" = "--target=wasm32-unknown-unknown" ]; then
    args=()
    for b in "\$@"; do [ "\$b" = "--release" ] && args+=(--profile wasm-release) || args+=("\$b"); done
    exec $WASM_CARGO "\${args[@]}" $WASM_BUILD_STD
  fi
done
exec "$(command -v cargo)" "\$@"
WRAP
chmod +x "$tools/bin/cargo"

PATH="$tools/bin:$PATH" CARGO="$tools/bin/cargo" trunk build --release --offline "$@"
wasm=$(ls dist/*.wasm)
echo "dashboard: $wasm $(stat -c %s "$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzipped"
