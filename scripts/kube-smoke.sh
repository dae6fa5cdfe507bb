#!/usr/bin/env bash
# kube-smoke.sh — check that the live v1.20.2 tier does what the controller's tests need.
#
# Usage: scripts/kube-smoke.sh [DIR]     (DIR default: a new temp dir, deleted afterwards)
#
# Builds or verifies the binaries, starts a cluster with kube-up.sh, and with the v1.20.2
# kubectl: applies controller/deploy/{namespace,crd,rbac,configmap}.yaml and the samples;
# gets the controller ServiceAccount's kubeconfig (kube-sa-kubeconfig.sh) and checks its
# RBAC with `kubectl auth can-i`; plays the cloud on a TCP+UDP port-53 LoadBalancer Service
# (status.loadBalancer through the status subresource with curl: kubectl 1.20 has no
# `patch --subresource`); checks ownerReference garbage collection and namespace deletion;
# stops the cluster with kube-down.sh. Does not run the sharedlb controller.
# Exits non-zero on the first failed check; the cluster's logs are kept on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'kube-smoke: %s\n' "$*" >&2; }
passed=0
ok() { passed=$((passed + 1)); say "ok: $*"; }
fail() { say "FAILED: $*"; say "cluster logs: $DIR/*.log"; say "$passed passed, 1 failed"; exit 1; }

if [ $# -ge 1 ]; then DIR=$1; KEEP=1; else DIR=$(mktemp -d -t sharedlb-kube.XXXXXX); KEEP=0; fi
down() {
  local rc=$?
  "$root/scripts/kube-down.sh" "$DIR" >/dev/null 2>&1 || true
  [ $rc -eq 0 ] && [ $KEEP = 0 ] && rm -rf "$DIR"
  exit $rc
}
trap down EXIT

# The CRD goes in before the controller-manager starts, so GC knows its kind at once.
"$root/scripts/kube-up.sh" "$DIR" "$root/controller/deploy/crd.yaml"
# shellcheck disable=SC1091
. "$DIR/env"
[ "$(command -v kubectl)" = "$SHAREDLB_KUBE_BIN/kubectl" ] || fail "kubectl on PATH is not the v1.20.2 one"
kubectl version --short 2>/dev/null | grep -q 'Server Version: v1.20.2' || fail "server is not v1.20.2"
ok "v1.20.2 server at $SHAREDLB_KUBE_SERVER"

deploy=$root/controller/deploy
kubectl apply -f "$deploy/namespace.yaml" -f "$deploy/crd.yaml" -f "$deploy/rbac.yaml" -f "$deploy/configmap.yaml" >/dev/null \
  || fail "apply controller/deploy"
kubectl wait --for condition=established crd/sharedlbs.sharedlb.io --timeout=30s >/dev/null || fail "CRD not established"
kubectl create namespace shop >/dev/null
kubectl apply -f "$deploy/samples.yaml" >/dev/null || fail "apply samples.yaml"
[ "$(kubectl get sharedlbs -n shop --no-headers | wc -l)" = 4 ] || fail "samples not all created"
ok "deploy manifests and 4 sample SharedLBs applied"

sa_kc=$DIR/controller.kubeconfig
"$root/scripts/kube-sa-kubeconfig.sh" "$DIR" sharedlb-system sharedlb-controller "$sa_kc" 2>/dev/null || fail "SA kubeconfig"
can() { KUBECONFIG=$sa_kc kubectl auth can-i "$@" 2>/dev/null || true; }
for q in "patch services -n shop" "create services -n sharedlb-system" "patch sharedlbs.sharedlb.io/status -n shop" \
         "update sharedlbs.sharedlb.io/finalizers -n shop" "create endpointslices.discovery.k8s.io -n sharedlb-system" \
         "update leases.coordination.k8s.io -n sharedlb-system"; do
  # shellcheck disable=SC2086
  [ "$(can $q)" = yes ] || fail "the controller SA cannot: $q"
done
for q in "delete namespaces" "delete sharedlbs.sharedlb.io -n shop" "get secrets -n sharedlb-system" \
         "create endpointslices.discovery.k8s.io -n shop"; do
  # shellcheck disable=SC2086
  [ "$(can $q)" = no ] || fail "the controller SA can, but should not: $q"
done
ok "controller ServiceAccount has exactly the shipped RBAC (can-i checks)"

kubectl apply -f - >/dev/null <<'EOF' || fail "create a TCP+UDP LoadBalancer Service"
apiVersion: v1
kind: Service
metadata: { name: dns-lb, namespace: sharedlb-system }
spec:
  type: LoadBalancer
  selector: { app: coredns }
  ports:
    - { name: dns-udp, protocol: UDP, port: 53 }
    - { name: dns-tcp, protocol: TCP, port: 53 }
EOF
# Playing the cloud: write status.loadBalancer through the status subresource.
curl -fsS --cacert "$SHAREDLB_KUBE_CA" -H "Authorization: Bearer $SHAREDLB_KUBE_TOKEN" \
  -X PATCH -H 'Content-Type: application/merge-patch+json' \
  -d '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}' \
  "$SHAREDLB_KUBE_SERVER/api/v1/namespaces/sharedlb-system/services/dns-lb/status" >/dev/null || fail "status patch"
[ "$(kubectl get svc dns-lb -n sharedlb-system -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" = 192.0.2.10 ] \
  || fail "status.loadBalancer not written"
[ "$(kubectl get svc dns-lb -n sharedlb-system -o jsonpath='{.spec.ports[*].protocol}')" = "UDP TCP" ] || fail "mixed protocols"
ok "TCP+UDP :53 LoadBalancer Service; its status.loadBalancer written as the cloud"

kubectl create namespace gc-test >/dev/null
kubectl apply -f - >/dev/null <<'EOF' || fail "create the owner SharedLB"
apiVersion: sharedlb.io/v1alpha1
kind: SharedLB
metadata: { name: owner, namespace: gc-test }
spec:
  selector: { app: web }
  ports:
    - { name: https, protocol: TCP, port: 443 }
EOF
uid=$(kubectl get sharedlb owner -n gc-test -o jsonpath='{.metadata.uid}')
kubectl create configmap owned -n gc-test --from-literal=a=b --dry-run=client -o json \
  | jq --arg uid "$uid" '.metadata.ownerReferences = [{apiVersion: "sharedlb.io/v1alpha1", kind: "SharedLB", name: "owner", uid: $uid}]' \
  | kubectl apply -f - >/dev/null || fail "create the owned ConfigMap"
t0=$(date +%s)
kubectl delete sharedlb owner -n gc-test >/dev/null
# Quick because the CRD was there when the garbage collector started (see kube-up.sh).
for _ in $(seq 1 50); do kubectl get configmap owned -n gc-test >/dev/null 2>&1 || break; sleep 0.2; done
kubectl get configmap owned -n gc-test >/dev/null 2>&1 && fail "owned ConfigMap not collected after 10 s"
ok "ownerReference GC: owned ConfigMap gone $(($(date +%s) - t0)) s after its SharedLB"

kubectl delete namespace shop gc-test --timeout=60s >/dev/null || fail "namespace deletion"
ok "namespaces deleted"

"$root/scripts/kube-down.sh" "$DIR" 2>/dev/null
for p in SHAREDLB_ETCD_PID SHAREDLB_APISERVER_PID SHAREDLB_KCM_PID; do
  pid=${!p}
  if kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    fail "pid $pid ($p) still runs after kube-down"
  fi
done
ok "kube-down stopped etcd, kube-apiserver and kube-controller-manager"
say "$passed passed, 0 failed"
