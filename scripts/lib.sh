# Sourced by scripts/*.sh: what the set-up steps share.

# Tools built once per machine and shared by every clone (trunk, wasm-bindgen-cli), keyed
# by version under $SHAREDLB_CACHE/tools.
SHAREDLB_CACHE="${SHAREDLB_CACHE:-$HOME/.cache/sharedlb}"

# children_cpu_seconds PID: user + system seconds of the finished (waited-for) children of
# process PID (/proc: cutime, cstime). The stage timings of scripts/test.sh and
# scripts/background.sh.
children_cpu_seconds() {
  local stat
  stat=$(</proc/"$1"/stat)
  set -- ${stat##*) }
  echo $(((${14} + ${15}) / $(getconf CLK_TCK)))
}

# apt_install PKG...: installs Debian packages (as root, or through sudo). Waits for a dpkg
# lock held by another process instead of failing.
apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "apt: installing $*" >&2
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q
    -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
  "${apt[@]}" update >/dev/null
  "${apt[@]}" install -y "$@" >/dev/null
}

# missing_debs PKG...: prints the packages that are not installed.
missing_debs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}
