#!/usr/bin/env bash
# kube-build.sh — build a real Kubernetes v1.20.2 control plane for the live-API tests.
#
# Usage: scripts/kube-build.sh [--packages-only]
#   --packages-only  install only the Debian packages (run-time ones, and the build's when
#                    the cached binaries do not verify), then stop (scripts/setup.sh).
#
# Leaves kube-apiserver, kube-controller-manager and kubectl (v1.20.2) in
#   ${SHAREDLB_CACHE:-$HOME/.cache/sharedlb}/kube-v1.20.2/bin/
# kubectl is not built: Debian bookworm's binary package kubernetes-client is the v1.20.2
# kubectl built from this same source; its binary is taken out of the .deb (`apt-get
# download`, not installed, so it never clashes with another kubectl on the machine).
# and makes sure the run-time tools of scripts/kube-up.sh are installed (etcd-server,
# openssl, curl, jq). Idempotent: when the binaries are there and were built by this
# recipe (bin/RECIPE), a run only verifies them and takes seconds.
#
# Why from source: no registry ships a v1.20.2 kube-apiserver binary, but Debian bookworm's
# *source* package `kubernetes` (1.20.5+really1.20.2) is the full upstream v1.20.2 tree with
# vendor/. We fetch it with `apt-get source` through a private apt configuration (deb-src
# lines for the machine's own Debian mirror; the system's apt lists are not touched), build
# it with Debian's Go (1.19) the way debian/rules does (GOPATH mode, `make WHAT=...`, which
# also generates the openapi code a plain `go build` lacks), after one vendor fix:
#   vendor/github.com/modern-go/reflect2 1.0.1 makes Go >= 1.18 binaries crash (SIGSEGV in
#   mapiterinit) on the first custom-resource write, so it and vendor/github.com/json-iterator/go
#   are replaced by Debian's golang-github-modern-go-reflect2-dev (1.0.2) and
#   golang-github-json-iterator-go-dev (1.1.12).
# A fresh build of the two needs ~10 CPU-minutes: ~6 min on 2 idle cores, 13-16 min measured while a
# Rust build shared the cores; the build tree peaks at ~2.4 GB under the cache and is deleted
# afterwards (the binaries, 106 + 100 + 36 MB, and the 34 MB source package stay: 274 MB).
#
# Environment:
#   SHAREDLB_CACHE            cache root (default $HOME/.cache/sharedlb)
#   SHAREDLB_KEEP_BUILD=1     keep the build tree (…/kube-v1.20.2/build) after building
#   SHAREDLB_KUBE_REBUILD=1   rebuild even if the cached binaries verify
#   SHAREDLB_DEBIAN_MIRROR, SHAREDLB_DEBIAN_SECURITY_MIRROR
#                             override the mirrors read from /etc/apt/sources.list*
# Needs root (or passwordless sudo) only when packages are missing.
set -euo pipefail

KUBE_VERSION=v1.20.2
DEB_SRC_PKG=kubernetes
# Debian's upstream version of that source; the Debian revision (-1.1+deb12uN) may move on.
DEB_UPSTREAM=1.20.5+really1.20.2
ORIG_TARBALL=${DEB_SRC_PKG}_${DEB_UPSTREAM}.orig.tar.gz
ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
KUBE_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
BINARIES=(kube-apiserver kube-controller-manager kubectl)
BUILT=(kube-apiserver kube-controller-manager) # kubectl comes from kubernetes-client
RUNTIME_PKGS=(etcd-server openssl curl jq)
BUILD_PKGS=(golang-go jq rsync dpkg-dev make golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
JSONITER_SRC=/usr/share/gocode/src/github.com/json-iterator/go
# Bump when the build recipe changes so cached binaries from an older recipe are rebuilt.
RECIPE="kube=${KUBE_VERSION} src=${DEB_SRC_PKG}_${DEB_UPSTREAM} vendor:reflect2=1.0.2,json-iterator=1.1.12 cgo=0 kubectl=deb:kubernetes-client recipe=2"

CACHE=${SHAREDLB_CACHE:-$HOME/.cache/sharedlb}
KDIR=$CACHE/kube-$KUBE_VERSION
BIN=$KDIR/bin
SRCPKG=$KDIR/srcpkg
APTDIR=$KDIR/apt
BUILD=$KDIR/build
LOG=$KDIR/build.log

T0=$(date +%s)
STAGE_NAME=""
STAGE_T=0
say() { printf 'kube-build: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
stage() {
  local now; now=$(date +%s)
  [ -n "$STAGE_NAME" ] && say "stage '$STAGE_NAME' took $((now - STAGE_T)) s"
  STAGE_NAME=$1; STAGE_T=$now
  [ -n "$1" ] && say "stage '$1' ..."
  return 0
}
finish() {
  stage ""
  say "done in $(($(date +%s) - T0)) s; binaries in $BIN"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

# Installs the named Debian packages that are not installed yet.
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing missing packages: ${missing[*]}"
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -q -y)
  # The system lists may be absent or stale on a fresh machine: update once on failure.
  if ! as_root env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >"$KDIR/apt-install.log" 2>&1; then
    as_root "${apt[@]}" update >>"$KDIR/apt-install.log" 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$KDIR/apt-install.log" 2>&1 \
      || { tail -20 "$KDIR/apt-install.log" >&2; die "apt-get install ${missing[*]} failed (log: $KDIR/apt-install.log)"; }
  fi
}

# True when the cached binaries exist, run, report v1.20.2 and were built by this recipe.
verify_bins() {
  local b v
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$BIN/RECIPE" ] && [ "$(cat "$BIN/RECIPE")" = "$RECIPE" ] || return 1
  v=$("$BIN/kube-apiserver" --version 2>/dev/null) || return 1
  [ "$v" = "Kubernetes $KUBE_VERSION" ] || return 1
  v=$("$BIN/kube-controller-manager" --version 2>/dev/null) || return 1
  [ "$v" = "Kubernetes $KUBE_VERSION" ] || return 1
  v=$("$BIN/kubectl" version --client -o json 2>/dev/null | jq -r .clientVersion.gitVersion) || return 1
  [ "$v" = "$KUBE_VERSION" ] || return 1
}

# Prints "URI SUITE SIGNED_BY" for each deb/deb-src entry of the system's apt sources
# (one-line and deb822 formats).
apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e '/^[[:space:]]*#/d' -e 's/#.*//' "$f" | awk '
      $1 == "deb" || $1 == "deb-src" {
        i = 2; sb = "-"
        if ($i ~ /^\[/) {
          while (i <= NF) {
            if ($i ~ /signed-by=/) { sb = $i; sub(/.*signed-by=/, "", sb); sub(/\].*/, "", sb) }
            if ($i ~ /\]$/) { i++; break }
            i++
          }
        }
        print $i, $(i+1), sb
      }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed -e '/^[[:space:]]*#/d' -e 's/#.*//' "$f" | awk '
      function flush() { if (types ~ /deb/ && enabled !~ /^no$/) { n = split(uris, u, " "); m = split(suites, s, " ");
                           for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b], (sb == "" ? "-" : sb) }
                         types = uris = suites = sb = enabled = "" }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:"     { $1 = ""; types = $0 }
      tolower($1) == "uris:"      { $1 = ""; uris = $0 }
      tolower($1) == "suites:"    { $1 = ""; suites = $0 }
      tolower($1) == "signed-by:" { sb = $2 }
      tolower($1) == "enabled:"   { enabled = tolower($2) }
      END { flush() }'
  done
}

# The .dsc in $SRCPKG (any Debian revision of the upstream version), or nothing.
dsc_file() {
  local f
  for f in "$SRCPKG/${DEB_SRC_PKG}_${DEB_UPSTREAM}"-*.dsc; do [ -f "$f" ] && { echo "$f"; return; }; done
  return 0
}

# Fetches the Debian source package into $SRCPKG (kept: 34 MB) unless it is there already.
fetch_source() {
  local have
  have=$(dsc_file)
  if [ -n "$have" ] && [ -f "$SRCPKG/$ORIG_TARBALL" ] \
     && echo "$ORIG_SHA256  $SRCPKG/$ORIG_TARBALL" | sha256sum -c --status; then
    say "source package already in $SRCPKG"
    return 0
  fi
  local main sec keyring
  main=${SHAREDLB_DEBIAN_MIRROR:-$(apt_entries | awk '$2 == "bookworm" { print $1; exit }')}
  sec=${SHAREDLB_DEBIAN_SECURITY_MIRROR:-$(apt_entries | awk '$2 == "bookworm-security" { print $1; exit }')}
  keyring=$(apt_entries | awk '$2 == "bookworm" && $3 != "-" { print $3; exit }')
  main=${main:-http://deb.debian.org/debian}
  sec=${sec:-http://deb.debian.org/debian-security}
  keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
  [ -f "$keyring" ] || die "Debian archive keyring $keyring not found (install debian-archive-keyring)"
  say "deb-src from $main (bookworm) and $sec (bookworm-security)"
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/parts" "$SRCPKG"
  cat >"$APTDIR/sources.list" <<EOF
deb-src [signed-by=$keyring] $main bookworm main
deb-src [signed-by=$keyring] $sec bookworm-security main
EOF
  local aptopts=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=$APTDIR/parts"
                 -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
                 -o DPkg::Lock::Timeout=900 -o APT::Sandbox::User=root -q)
  apt-get "${aptopts[@]}" update >"$APTDIR/update.log" 2>&1 \
    || { tail -20 "$APTDIR/update.log" >&2; die "apt-get update of the private deb-src lists failed"; }
  # The Debian revision may move on (security updates); any revision of this upstream will do.
  local ver
  ver=$(apt-cache "${aptopts[@]}" showsrc "$DEB_SRC_PKG" 2>/dev/null \
        | awk -v up="$DEB_UPSTREAM" '$1 == "Version:" && index($2, up "-") == 1 { print $2 }' | sort -V | tail -1)
  [ -n "$ver" ] || die "no source package $DEB_SRC_PKG $DEB_UPSTREAM-* on $main / $sec"
  say "fetching source package $DEB_SRC_PKG=$ver"
  rm -f "$SRCPKG"/*
  (cd "$SRCPKG" && apt-get "${aptopts[@]}" source --download-only "$DEB_SRC_PKG=$ver") >"$APTDIR/source.log" 2>&1 \
    || { tail -20 "$APTDIR/source.log" >&2; die "apt-get source $DEB_SRC_PKG=$ver failed"; }
  echo "$ORIG_SHA256  $SRCPKG/$ORIG_TARBALL" | sha256sum -c --status \
    || die "$ORIG_TARBALL does not have the expected sha256 (upstream v1.20.2): refusing to build it"
  rm -rf "$APTDIR/lists" "$APTDIR/cache"   # ~70 MB of indexes, not needed any more
}

# Takes kubectl out of Debian's kubernetes-client package of the same upstream version
# into the directory $1.
fetch_kubectl() {
  local dest=$1 dir=$KDIR/kubectl-deb deb
  rm -rf "$dir"
  mkdir -p "$dir"
  local get=(apt-get -q -o APT::Sandbox::User=root download kubernetes-client)
  # The system lists may be absent or stale on a fresh machine: update once on failure.
  if ! (cd "$dir" && "${get[@]}") >"$dir/download.log" 2>&1; then
    as_root apt-get -q -o DPkg::Lock::Timeout=900 update >>"$dir/download.log" 2>&1 || true
    (cd "$dir" && "${get[@]}") >>"$dir/download.log" 2>&1 \
      || { tail -20 "$dir/download.log" >&2; die "apt-get download kubernetes-client failed"; }
  fi
  deb=$(ls "$dir"/kubernetes-client_*.deb)
  case "$(dpkg-deb -f "$deb" Version)" in
    "$DEB_UPSTREAM"-*) ;;
    *) die "kubernetes-client $(dpkg-deb -f "$deb" Version) is not upstream $DEB_UPSTREAM" ;;
  esac
  dpkg-deb -x "$deb" "$dir/x"
  cp "$dir/x/usr/bin/kubectl" "$dest/kubectl"
  rm -rf "$dir"
}

mkdir -p "$KDIR"
exec 9>"$KDIR/.lock"
flock 9 || die "cannot lock $KDIR/.lock"

packages_only=false
[ "${1:-}" != --packages-only ] || packages_only=true

stage "verify cached binaries"
ensure_pkgs "${RUNTIME_PKGS[@]}"
if $packages_only; then
  if [ "${SHAREDLB_KUBE_REBUILD:-0}" = 1 ] || ! verify_bins; then ensure_pkgs "${BUILD_PKGS[@]}"; fi
  say "packages installed"
  exit 0
fi
if [ "${SHAREDLB_KUBE_REBUILD:-0}" != 1 ] && verify_bins; then
  say "cached binaries are good: $RECIPE"
  for b in "${BINARIES[@]}"; do say "  $BIN/$b ($(du -m "$BIN/$b" | cut -f1) MB)"; done
  finish
  exit 0
fi
say "no usable cached binaries: building"

stage "install build packages"
ensure_pkgs "${BUILD_PKGS[@]}"
[ -d "$REFLECT2_SRC" ] || die "$REFLECT2_SRC missing (golang-github-modern-go-reflect2-dev)"
[ -d "$JSONITER_SRC" ] || die "$JSONITER_SRC missing (golang-github-json-iterator-go-dev)"
# Debian's Go first, as debian/rules does, whatever else is on PATH.
export PATH=/usr/lib/go/bin:$PATH
say "$(go version)"

stage "fetch source"
fetch_source

stage "unpack and patch"
rm -rf "$BUILD"
mkdir -p "$BUILD"
dsc=$(dsc_file)
[ -n "$dsc" ] || die "no .dsc in $SRCPKG"
# dpkg-source checks the checksums of the .dsc and applies Debian's patches (kubectl
# printing fixes and CVE-2021-25743); its signature warning is expected (no debian-keyring).
(cd "$BUILD" && dpkg-source -x "$dsc" src) >"$BUILD/unpack.log" 2>&1 \
  || { tail -20 "$BUILD/unpack.log" >&2; die "dpkg-source -x $dsc failed"; }
TREE=$BUILD/src
[ -f "$TREE/vendor/github.com/modern-go/reflect2/reflect2.go" ] || die "unexpected tree: no vendor/ in $TREE"
rsync -a --delete --exclude='*_test.go' "$REFLECT2_SRC/" "$TREE/vendor/github.com/modern-go/reflect2/"
rsync -a --delete --exclude='*_test.go' "$JSONITER_SRC/" "$TREE/vendor/github.com/json-iterator/go/"
cat >"$BUILD/version" <<EOF
KUBE_GIT_COMMIT='$KUBE_COMMIT'
KUBE_GIT_TREE_STATE='dirty'
KUBE_GIT_VERSION='$KUBE_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOF
# The GOPATH layout of debian/rules.
mkdir -p "$TREE/.go/src/k8s.io"
ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"

stage "make (${BUILT[*]})"
say "log: $LOG"
unset GOFLAGS GOBIN GOROOT GOPROXY
if ! (cd "$TREE" && env GOPATH="$TREE/.go" GO111MODULE=off CGO_ENABLED=0 HOME="$BUILD/home" \
        KUBE_GIT_VERSION_FILE="$BUILD/version" \
        make WHAT="${BUILT[*]/#/cmd/}") >"$LOG" 2>&1; then
  tail -40 "$LOG" >&2
  die "make failed; full log in $LOG (the build tree $BUILD is kept)"
fi

stage "install binaries"
rm -rf "$BIN.new"
mkdir -p "$BIN.new"
for b in "${BUILT[@]}"; do
  cp -L "$TREE/_output/bin/$b" "$BIN.new/$b" || die "make did not produce _output/bin/$b"
done
fetch_kubectl "$BIN.new"
echo "$RECIPE" >"$BIN.new/RECIPE"
rm -rf "$BIN"
mv "$BIN.new" "$BIN"
verify_bins || die "the new binaries do not verify (run them by hand: $BIN/kube-apiserver --version)"
if [ "${SHAREDLB_KEEP_BUILD:-0}" = 1 ]; then
  say "keeping build tree $BUILD (SHAREDLB_KEEP_BUILD=1)"
else
  rm -rf "$BUILD"
fi
for b in "${BINARIES[@]}"; do say "  $BIN/$b ($(du -m "$BIN/$b" | cut -f1) MB)"; done
finish
