#!/usr/bin/env bash
# kube-down.sh — stop a cluster started by scripts/kube-up.sh.
#
# Usage: scripts/kube-down.sh DIR [--purge]
#
# Stops kube-controller-manager, kube-apiserver and etcd by the pid files in DIR (TERM,
# then KILL after 10 s), and only a pid whose process still runs the expected program, so
# a recycled pid is never hit. Safe to call twice, or on a half-started cluster. Keeps the
# logs and state in DIR unless --purge is given (which deletes DIR).
set -euo pipefail

say() { printf 'kube-down: %s\n' "$*" >&2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then say "usage: $0 DIR [--purge]"; exit 2; fi
DIR=$1
PURGE=${2:-}
[ -z "$PURGE" ] || [ "$PURGE" = --purge ] || { say "unknown option $PURGE"; exit 2; }
if [ ! -d "$DIR" ]; then
  say "$DIR does not exist: nothing to stop"
  exit 0
fi

# True while PID runs (a zombie, e.g. a child of a kube-up that is still exiting, is done).
running() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# stop NAME PROGRAM: stop the process of DIR/NAME.pid if it is PROGRAM.
stop() {
  local name=$1 prog=$2 pidf="$DIR/$1.pid" pid exe
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if [ -n "$pid" ] && running "$pid"; then
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    exe=$(basename "${exe% (deleted)}")
    if [ "$exe" != "$prog" ]; then
      say "pid $pid of $name now runs '${exe:-?}', not $prog: leaving it alone"
    else
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$pid" || break; sleep 0.2; done
      if running "$pid"; then
        say "$name (pid $pid) ignored TERM: killing"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 25); do running "$pid" || break; sleep 0.2; done
      fi
      say "stopped $name (pid $pid)"
    fi
  fi
  rm -f "$pidf"
}

stop kube-controller-manager kube-controller-manager
stop kube-apiserver kube-apiserver
stop etcd etcd
if [ "$PURGE" = --purge ]; then
  [ -f "$DIR/.kube-up" ] || { say "$DIR is not a kube-up dir: not deleting it"; exit 1; }
  rm -rf "$DIR"
  say "deleted $DIR"
fi
