#!/usr/bin/env bash
# Brings up ringcache on a throw-away kind cluster and runs the end-to-end tests against it.
#
#   e2e/kind.sh          create cluster, build + load images, helm install (operator + CacheCluster
#                        "demo"), run `cargo test -p ringcache-e2e`, delete the cluster
#   e2e/kind.sh --keep   the same, but keep the cluster afterwards
#   e2e/kind.sh --up     bring everything up and keep it, without running the tests
#
# Needs docker, kind, helm, kubectl and cargo. helm and kubectl are taken from .tools/bin when
# present (`.ci/chart-check.sh` installs them there). The cluster gets its own kubeconfig file
# (e2e/.kubeconfig), so your ~/.kube/config is never touched and the tests talk only to it.
# Environment: KIND_CLUSTER (default ringcache-e2e), KIND_NODE_IMAGE (optional kindest/node image).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.tools/bin:$PATH"

mode="test"
case "${1:-}" in
  "") ;;
  --keep) mode=keep ;;
  --up) mode=up ;;
  *) echo "usage: $0 [--keep|--up]" >&2; exit 2 ;;
esac

cluster=${KIND_CLUSTER:-ringcache-e2e}
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/ringcache/Chart.yaml)
node_image=ghcr.io/ringcache/ringcache-node:$version
operator_image=ghcr.io/ringcache/ringcache-operator:$version
release=ringcache
release_ns=ringcache-system
export KUBECONFIG="$root/e2e/.kubeconfig"

log() { printf '\n[kind.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

for tool in docker kind helm kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "kind.sh: $tool not found (helm/kubectl: run .ci/chart-check.sh)" >&2; exit 1; }
done

dump() {
  log "diagnostics"
  kubectl get nodes -o wide || true
  kubectl get cacheclusters -A -o yaml || true
  kubectl get statefulsets,pods,services,configmaps,pdb -A -l app.kubernetes.io/name=ringcache -o wide || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 200 || true
  kubectl -n "$release_ns" logs deployment/"$release" --tail=500 || true
  kubectl get pods -A -l app.kubernetes.io/managed-by=ringcache-operator \
    -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' 2>/dev/null |
    while read -r ns pod; do
      echo "--- logs $ns/$pod"
      kubectl -n "$ns" logs "$pod" --tail=200 || true
      kubectl -n "$ns" logs "$pod" --previous --tail=100 2>/dev/null || true
    done
}

finish() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    dump
    log "FAILED (exit $rc)"
  fi
  if [ "$mode" = test ]; then
    log "deleting kind cluster $cluster"
    kind delete cluster --name "$cluster" --kubeconfig "$KUBECONFIG" || true
    rm -f "$KUBECONFIG"
  else
    log "cluster $cluster kept: export KUBECONFIG=$KUBECONFIG   (delete: kind delete cluster --name $cluster)"
  fi
  exit "$rc"
}
trap finish EXIT

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing kind cluster $cluster"
  kind export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config e2e/kind-config.yaml --kubeconfig "$KUBECONFIG" \
    --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi

log "building images $node_image and $operator_image"
docker build --target node --build-arg VERSION="$version" -t "$node_image" .
docker build --target operator --build-arg VERSION="$version" -t "$operator_image" .
# A second tag of the same node image: the rolling-upgrade scenario switches to it.
upgrade_image="$node_image-upgrade"
docker tag "$node_image" "$upgrade_image"
kind load docker-image "$node_image" "$upgrade_image" "$operator_image" --name "$cluster"

log "installing the chart (operator + CacheCluster demo in $release_ns)"
helm upgrade --install "$release" charts/ringcache --namespace "$release_ns" --create-namespace \
  --set image.pullPolicy=IfNotPresent \
  --set cacheCluster.enabled=true --set cacheCluster.name=demo \
  --wait --timeout 5m
kubectl -n "$release_ns" wait cachecluster/demo --for=jsonpath='{.status.phase}'=Ready --timeout=300s
kubectl -n "$release_ns" get cachecluster demo

if [ "$mode" = up ]; then
  cat <<MSG

ringcache is up. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $release_ns port-forward svc/demo 7070:http &
  curl -X PUT --data-binary hello http://127.0.0.1:7070/v1/keys/greeting
  curl http://127.0.0.1:7070/v1/keys/greeting
More: examples/walkthrough.md
MSG
  exit 0
fi

log "running the e2e tests against $cluster"
RINGCACHE_E2E_UPGRADE_IMAGE="$upgrade_image" cargo test -p ringcache-e2e -- --nocapture --test-threads=1
log "e2e passed"
