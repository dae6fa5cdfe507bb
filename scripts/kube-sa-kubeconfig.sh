#!/usr/bin/env bash
# kube-sa-kubeconfig.sh — a kubeconfig for a ServiceAccount of a kube-up.sh cluster.
#
# Usage: scripts/kube-sa-kubeconfig.sh DIR NAMESPACE SA OUT
#   e.g. scripts/kube-sa-kubeconfig.sh "$D" sharedlb-system sharedlb-controller "$D/controller.kubeconfig"
#        KUBECONFIG="$D/controller.kubeconfig" kubectl auth can-i patch services
#
# Reads the token secret that Kubernetes 1.20's serviceaccount-token controller creates for
# every ServiceAccount (type kubernetes.io/service-account-token, annotated with the SA's
# name) and writes OUT: the cluster of DIR (CA embedded), that token as the user, NAMESPACE
# as the default namespace. So a program run with KUBECONFIG=OUT acts exactly as the SA,
# with the RBAC bound to it (e.g. the shipped controller/deploy/rbac.yaml). Waits up to
# 30 s (SHAREDLB_SA_TIMEOUT) for the SA and its secret, which appear a moment after the SA
# is created.
set -euo pipefail

say() { printf 'kube-sa-kubeconfig: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ $# -eq 4 ] || die "usage: $0 DIR NAMESPACE SA OUT"
DIR=$1 NS=$2 SA=$3 OUT=$4
[ -f "$DIR/env" ] || die "$DIR/env not found: is $DIR a cluster started by scripts/kube-up.sh?"
# shellcheck disable=SC1091
. "$DIR/env"
TIMEOUT=${SHAREDLB_SA_TIMEOUT:-30}

api() {
  curl -sS --max-time 5 --cacert "$SHAREDLB_KUBE_CA" -H "Authorization: Bearer $SHAREDLB_KUBE_TOKEN" \
    "$SHAREDLB_KUBE_SERVER$1"
}

token=""
for _ in $(seq 1 $((TIMEOUT * 4))); do
  # The SA's token secrets, newest first; a secret counts once the controller filled its token.
  token=$(api "/api/v1/namespaces/$NS/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token" 2>/dev/null \
    | jq -r --arg sa "$SA" '[.items[]? | select(.metadata.annotations["kubernetes.io/service-account.name"] == $sa)
                               | select(.data.token != null)]
                            | sort_by(.metadata.creationTimestamp) | reverse | .[0].data.token // empty' 2>/dev/null \
    | base64 -d 2>/dev/null || true)
  [ -n "$token" ] && break
  sleep 0.25
done
if [ -z "$token" ]; then
  sa=$(api "/api/v1/namespaces/$NS/serviceaccounts/$SA" 2>/dev/null | jq -r '.kind // empty' 2>/dev/null || true)
  [ "$sa" = ServiceAccount ] || die "ServiceAccount $NS/$SA does not exist (after ${TIMEOUT}s)"
  die "no token secret for ServiceAccount $NS/$SA after ${TIMEOUT}s (is the serviceaccount-token controller running? see $DIR/kube-controller-manager.log)"
fi

mkdir -p "$(dirname "$OUT")"
(umask 077; cat >"$OUT.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sharedlb-test
  cluster:
    server: $SHAREDLB_KUBE_SERVER
    certificate-authority-data: $(base64 -w0 "$SHAREDLB_KUBE_CA")
users:
- name: $NS-$SA
  user:
    token: $token
contexts:
- name: $NS-$SA
  context:
    cluster: sharedlb-test
    user: $NS-$SA
    namespace: $NS
current-context: $NS-$SA
EOF
)
mv "$OUT.tmp" "$OUT"
say "wrote $OUT (system:serviceaccount:$NS:$SA)"
