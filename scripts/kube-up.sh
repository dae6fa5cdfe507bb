#!/usr/bin/env bash
# kube-up.sh — start a throwaway Kubernetes v1.20.2 control plane on loopback.
#
# Usage: scripts/kube-up.sh DIR [MANIFEST...]
#   then:  source DIR/env; kubectl get ns       (kubectl here is the v1.20.2 one)
#   stop:  scripts/kube-down.sh DIR
#
# Starts, in the background, each in its own session with its log in DIR/*.log:
#   etcd (Debian's etcd-server 3.4, data in DIR/etcd, fsync off: throwaway),
#   kube-apiserver (TLS only, with a CA made by openssl in DIR; token auth; RBAC),
#   kube-controller-manager (garbage collector, namespace deletion, ServiceAccounts and
#   their token secrets, endpoints/EndpointSlices; no cloud, no nodes).
# All ports are free loopback ports picked at random (retried if one is taken meanwhile),
# so several clusters, or a leftover one, never clash. Waits for /readyz, for the
# controller-manager's /healthz and for the first ServiceAccount token (about 10 s).
#
# Writes:
#   DIR/admin.kubeconfig   cluster-admin (system:masters) by static token, CA embedded
#   DIR/env                exports: KUBECONFIG, SHAREDLB_KUBE_SERVER, SHAREDLB_KUBE_TOKEN
#                          (admin bearer token), SHAREDLB_KUBE_CA, SHAREDLB_KUBE_BIN, the pids,
#                          and PATH with the v1.20.2 kubectl first
#   DIR/ca.crt, DIR/tokens.csv, DIR/sa.key, ...; DIR/*.pid for kube-down.sh
# DIR must be empty, absent, or a cluster dir left by an earlier kube-up that is down: it
# is wiped and reused. A cluster still running in DIR is an error.
#
# MANIFESTs (e.g. controller/deploy/crd.yaml) are applied with kubectl before the
# controller-manager starts, and their CRDs waited for: the garbage collector then watches
# the CRD's kind from its start, whereas for a CRD created later it only learns of it at its
# next discovery (a fixed 30 s period in 1.20), so ownerReference GC of custom resources
# would lag 0-30 s behind.
#
# No kubelet and no cloud: nothing runs pods, and nothing fills status.loadBalancer of a
# LoadBalancer Service; a test plays the cloud through the status subresource, e.g.
#   curl -sS --cacert "$SHAREDLB_KUBE_CA" -H "Authorization: Bearer $SHAREDLB_KUBE_TOKEN" \
#     -X PATCH -H 'Content-Type: application/merge-patch+json' \
#     -d '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}' \
#     "$SHAREDLB_KUBE_SERVER/api/v1/namespaces/NS/services/NAME/status"
#
# Environment:
#   SHAREDLB_CACHE           where kube-build.sh keeps the binaries (default $HOME/.cache/sharedlb)
#   SHAREDLB_KCM_CONTROLLERS override the controller-manager's --controllers list
#   SHAREDLB_KUBE_VERBOSITY  --v of apiserver and controller-manager (default 1)
#   SHAREDLB_KUBE_UP_TIMEOUT seconds to wait for readiness (default 90)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'kube-up: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ $# -ge 1 ] || die "usage: $0 DIR [MANIFEST...]"
DIR=$1
shift
MANIFESTS=()
for m in "$@"; do
  [ -f "$m" ] || die "manifest $m not found"
  MANIFESTS+=("$(cd "$(dirname "$m")" && pwd)/$(basename "$m")")
done
T0=$(date +%s)

KUBE_VERSION=v1.20.2
BIN=${SHAREDLB_CACHE:-$HOME/.cache/sharedlb}/kube-$KUBE_VERSION/bin
VERBOSITY=${SHAREDLB_KUBE_VERBOSITY:-1}
TIMEOUT=${SHAREDLB_KUBE_UP_TIMEOUT:-90}
CONTROLLERS=${SHAREDLB_KCM_CONTROLLERS:-garbagecollector,namespace,serviceaccount,serviceaccount-token,endpoint,endpointslice,endpointslicemirroring,clusterrole-aggregation,resourcequota}
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1
ISSUER=https://kubernetes.default.svc

# Builds (first time, 5-15 min) or just verifies (a second) the binaries; installs etcd & co.
"$here/kube-build.sh" || die "scripts/kube-build.sh failed"
ETCD=$(command -v etcd || true)
[ -x "$ETCD" ] || ETCD=/usr/bin/etcd
[ -x "$ETCD" ] || die "etcd not found (apt-get install etcd-server)"

# --- the state dir ------------------------------------------------------------------------
# True while PID runs; a zombie (this machine's init may not reap orphans) is dead.
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
if [ -e "$DIR" ]; then
  [ -d "$DIR" ] || die "$DIR exists and is not a directory"
  if [ -f "$DIR/.kube-up" ]; then
    for f in "$DIR"/*.pid; do
      [ -f "$f" ] || continue
      alive "$(cat "$f")" && die "a cluster is still running in $DIR ($(basename "$f" .pid) pid $(cat "$f")): scripts/kube-down.sh $DIR first"
    done
    find "$DIR" -mindepth 1 -delete
  elif [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR is not empty and not a kube-up cluster dir: refusing to wipe it"
  fi
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
touch "$DIR/.kube-up"
cd "$DIR"

# On failure: stop what was started, keep the logs.
cleanup_on_error() {
  local rc=$?
  [ $rc -eq 0 ] && return
  say "failed; stopping what was started (logs stay in $DIR)"
  "$here/kube-down.sh" "$DIR" >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup_on_error EXIT

# --- free ports ---------------------------------------------------------------------------
# Ports in use (any state, v4 and v6), from /proc so that no extra tool is needed.
used_ports() {
  local h
  awk 'FNR > 1 { n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u \
    | while read -r h; do echo $((16#$h)); done
}
# Picks N distinct random ports in 20000-32767 (below Linux's ephemeral range, so an
# outgoing connection will not take one between the pick and the bind) that are unused now.
pick_ports() {
  local n=$1 used p picked=()
  used=" $(used_ports | tr '\n' ' ') "
  while [ ${#picked[@]} -lt "$n" ]; do
    p=$((20000 + RANDOM % 12768))
    case "$used ${picked[*]} " in *" $p "*) continue ;; esac
    picked+=("$p")
  done
  echo "${picked[@]}"
}

# Starts "$@" in its own session, logging to DIR/NAME.log, pid in DIR/NAME.pid.
start() {
  local name=$1; shift
  setsid "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}
# True when NAME's log shows a port clash.
port_clash() { grep -qiE 'address already in use|bind: ' "$DIR/$1.log" 2>/dev/null; }

# --- certificates and credentials ---------------------------------------------------------
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sharedlb-test-ca" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout apiserver.key -out apiserver.csr 2>/dev/null
cat >apiserver.ext <<EOF
subjectAltName = IP:127.0.0.1, IP:$SERVICE_IP, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
keyUsage = digitalSignature, keyEncipherment
basicConstraints = CA:FALSE
EOF
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile apiserver.ext -out apiserver.crt 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
ADMIN_TOKEN=$(openssl rand -hex 24)
KCM_TOKEN=$(openssl rand -hex 24)
# token,user,uid,"groups"
cat >tokens.csv <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$KCM_TOKEN,system:kube-controller-manager,system:kube-controller-manager,"system:masters"
EOF
CA_DATA=$(base64 -w0 ca.crt)
umask 022

# kubeconfig TOKEN SERVER NAMESPACE
kubeconfig() {
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sharedlb-test
  cluster:
    server: $2
    certificate-authority-data: $CA_DATA
users:
- name: user
  user:
    token: $1
contexts:
- name: sharedlb-test
  context:
    cluster: sharedlb-test
    user: user
    namespace: $3
current-context: sharedlb-test
EOF
}

# --- etcd ---------------------------------------------------------------------------------
NO_FSYNC=()
"$ETCD" --help 2>&1 | grep -q -- '--unsafe-no-fsync' && NO_FSYNC=(--unsafe-no-fsync)
for _ in 1 2 3; do
  read -r ETCD_PORT ETCD_PEER_PORT <<<"$(pick_ports 2)"
  rm -rf etcd; : >etcd.log
  start etcd "$ETCD" --name sharedlb-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "sharedlb-test=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --log-level warn --logger zap "${NO_FSYNC[@]}"
  ok=0
  for _ in $(seq 1 100); do
    alive "$(cat etcd.pid)" || break
    if curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] && break
  "$here/kube-down.sh" "$DIR" >/dev/null 2>&1 || true
  port_clash etcd && { say "etcd port clash, retrying with other ports"; continue; }
  tail -20 etcd.log >&2; die "etcd exited or did not become healthy within 20 s (log: $DIR/etcd.log)"
done
[ "$ok" = 1 ] || die "etcd: no free ports after 3 tries"
say "etcd up on 127.0.0.1:$ETCD_PORT (pid $(cat etcd.pid))"

# --- kube-apiserver -----------------------------------------------------------------------
for _ in 1 2 3; do
  read -r API_PORT <<<"$(pick_ports 1)"
  SERVER=https://127.0.0.1:$API_PORT
  : >kube-apiserver.log
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$DIR/apiserver.crt" --tls-private-key-file="$DIR/apiserver.key" \
    --client-ca-file="$DIR/ca.crt" \
    --token-auth-file="$DIR/tokens.csv" --authorization-mode=RBAC --anonymous-auth=false \
    --service-account-key-file="$DIR/sa.pub" --service-account-signing-key-file="$DIR/sa.key" \
    --service-account-issuer="$ISSUER" --api-audiences="$ISSUER" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --feature-gates=MixedProtocolLBService=true,ServiceLBNodePortControl=true \
    --endpoint-reconciler-type=none --profiling=false \
    --cert-dir="$DIR/apiserver-certs" --logtostderr=true --v="$VERBOSITY"
  ok=0
  for _ in $(seq 1 $((TIMEOUT * 4))); do
    alive "$(cat kube-apiserver.pid)" || break
    if [ "$(curl -sS --max-time 2 --cacert ca.crt -H "Authorization: Bearer $ADMIN_TOKEN" "$SERVER/readyz" 2>/dev/null)" = ok ]; then
      ok=1; break
    fi
    sleep 0.25
  done
  [ $ok = 1 ] && break
  if ! alive "$(cat kube-apiserver.pid)" && port_clash kube-apiserver; then
    say "kube-apiserver port clash, retrying with another port"; continue
  fi
  tail -30 kube-apiserver.log >&2
  alive "$(cat kube-apiserver.pid)" || die "kube-apiserver exited (log: $DIR/kube-apiserver.log)"
  die "kube-apiserver not ready after ${TIMEOUT}s (log: $DIR/kube-apiserver.log)"
done
[ "$ok" = 1 ] || die "kube-apiserver: no free port after 3 tries"
say "kube-apiserver ready at $SERVER (pid $(cat kube-apiserver.pid)) after $(($(date +%s) - T0)) s"

kubeconfig "$ADMIN_TOKEN" "$SERVER" default >admin.kubeconfig
(umask 077; kubeconfig "$KCM_TOKEN" "$SERVER" kube-system >kube-controller-manager.kubeconfig)

if [ ${#MANIFESTS[@]} -gt 0 ]; then
  args=()
  for m in "${MANIFESTS[@]}"; do args+=(-f "$m"); done
  KUBECONFIG=$DIR/admin.kubeconfig "$BIN/kubectl" apply "${args[@]}" >manifests.log 2>&1 \
    || { cat manifests.log >&2; die "kubectl apply of ${MANIFESTS[*]} failed"; }
  if KUBECONFIG=$DIR/admin.kubeconfig "$BIN/kubectl" get crd -o name 2>/dev/null | grep -q .; then
    KUBECONFIG=$DIR/admin.kubeconfig "$BIN/kubectl" wait --for condition=established crd --all --timeout=30s >>manifests.log 2>&1 \
      || { cat manifests.log >&2; die "CRDs not established"; }
  fi
  say "applied ${#MANIFESTS[@]} manifest(s) before the controller-manager"
fi

# --- kube-controller-manager --------------------------------------------------------------
for _ in 1 2 3; do
  read -r KCM_PORT <<<"$(pick_ports 1)"
  : >kube-controller-manager.log
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
    --port=0 --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$DIR/kcm-certs" \
    --controllers="$CONTROLLERS" --leader-elect=false \
    --service-account-private-key-file="$DIR/sa.key" --root-ca-file="$DIR/ca.crt" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --logtostderr=true --v="$VERBOSITY"
  ok=0
  for _ in $(seq 1 $((TIMEOUT * 4))); do
    alive "$(cat kube-controller-manager.pid)" || break
    if [ "$(curl -sSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null)" = ok ]; then ok=1; break; fi
    sleep 0.25
  done
  [ $ok = 1 ] && break
  if ! alive "$(cat kube-controller-manager.pid)" && port_clash kube-controller-manager; then
    say "kube-controller-manager port clash, retrying with another port"; continue
  fi
  tail -30 kube-controller-manager.log >&2
  alive "$(cat kube-controller-manager.pid)" || die "kube-controller-manager exited (log: $DIR/kube-controller-manager.log)"
  die "kube-controller-manager not healthy after ${TIMEOUT}s (log: $DIR/kube-controller-manager.log)"
done
[ "$ok" = 1 ] || die "kube-controller-manager: no free port after 3 tries"

# The serviceaccount and serviceaccount-token controllers are working once default/default
# has its token secret: that is what scripts/kube-sa-kubeconfig.sh relies on.
ok=0
for _ in $(seq 1 $((TIMEOUT * 4))); do
  n=$(curl -sS --max-time 2 --cacert ca.crt -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$SERVER/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null | jq '.secrets | length' 2>/dev/null || true)
  [ "${n:-0}" -ge 1 ] 2>/dev/null && { ok=1; break; }
  alive "$(cat kube-controller-manager.pid)" || break
  sleep 0.25
done
[ "$ok" = 1 ] || { tail -30 kube-controller-manager.log >&2; die "no ServiceAccount token secret after ${TIMEOUT}s (log: $DIR/kube-controller-manager.log)"; }
say "kube-controller-manager up (pid $(cat kube-controller-manager.pid), healthz on 127.0.0.1:$KCM_PORT)"

cat >"$DIR/env" <<EOF
# Written by scripts/kube-up.sh: source it to talk to the cluster in $DIR.
export KUBECONFIG=$DIR/admin.kubeconfig
export SHAREDLB_KUBE_DIR=$DIR
export SHAREDLB_KUBE_SERVER=$SERVER
export SHAREDLB_KUBE_TOKEN=$ADMIN_TOKEN
export SHAREDLB_KUBE_CA=$DIR/ca.crt
export SHAREDLB_KUBE_BIN=$BIN
export SHAREDLB_ETCD_URL=http://127.0.0.1:$ETCD_PORT
export SHAREDLB_ETCD_PID=$(cat etcd.pid)
export SHAREDLB_APISERVER_PID=$(cat kube-apiserver.pid)
export SHAREDLB_KCM_PID=$(cat kube-controller-manager.pid)
export PATH=$BIN:\$PATH
EOF
trap - EXIT
say "cluster up in $(($(date +%s) - T0)) s: source $DIR/env (KUBECONFIG=$DIR/admin.kubeconfig)"
