//! An in-memory fake Kubernetes API server. A real [`kube::Client`] talks to it through
//! [`FakeApi::client`] (a tower service, no network), so the operator's reconcile code runs
//! unchanged; the simulation's StatefulSet-controller and kubelet stand-ins use the direct Rust
//! methods ([`FakeApi::get`], [`FakeApi::update_status`], ...).
//!
//! Objects are untyped [`serde_json::Value`]s keyed by resource ([`Res`]), namespace and name.
//! What is real and what is approximated:
//!
//! * Real: the URL layout, JSON `Status` errors with the API server's reasons and codes,
//!   `NotFound`/`AlreadyExists`/`Conflict` semantics, `resourceVersion` preconditions on PUT,
//!   patches and server-side apply, one global `resourceVersion` counter that only moves on real
//!   changes, `generation` bumps on `.spec` changes, `/status` isolation, graceful pod deletion,
//!   `generateName`, label and field selectors, `limit`/`continue`, `dryRun=All`.
//! * Approximated: server-side apply tracks, per object, the last writer of every leaf field
//!   (lists are atomic leaves, maps recurse) instead of managedFields sets with shared
//!   ownership and associative lists; `force` is accepted and ignored because conflicts between
//!   managers are never raised; managedFields are not exposed in objects
//!   ([`FakeApi::field_owners`] shows the ownership instead). Strategic merge patch is a plain
//!   merge patch (lists are replaced, `$patch` directives are not understood). Every kind is
//!   treated as having a `/status` subresource. There is no schema validation, defaulting,
//!   admission, finalizer handling, garbage collection or watch support (watches answer 405).

mod json;
mod rest;
mod selector;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use self::json::{FieldPath, leaves, lookup, merge_patch, remove_pruning, set_or_remove};
use self::selector::Selector;

/// The field manager recorded for HTTP writes that name none (kube's `PatchParams::default()`,
/// e.g. the events `Recorder`'s merge patches).
pub const DEFAULT_MANAGER: &str = "unknown";
/// The field manager recorded for writes made through the direct Rust methods.
pub const SIM_MANAGER: &str = "sim";
/// Pods deleted without a grace period wait this long, as with the API server's default.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The request log keeps this many entries; a long simulation must not grow without bound.
const LOG_CAPACITY: usize = 10_000;
/// `metadata` fields only the server sets; writes cannot change them and they have no owner.
const SYSTEM_METADATA: [&str; 11] = [
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// A resource type: API group/version and plural name, e.g. `apps/v1` + `statefulsets`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Res {
    /// `v1` for the core group, otherwise `group/version`.
    pub group_version: String,
    pub plural: String,
}

impl Res {
    pub fn new(group_version: impl Into<String>, plural: impl Into<String>) -> Self {
        Res {
            group_version: group_version.into(),
            plural: plural.into(),
        }
    }

    /// The resource of a typed kind, e.g. `Res::of::<Pod>()`.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Res::new(K::api_version(&()), K::plural(&()))
    }

    pub fn pods() -> Self {
        Res::new("v1", "pods")
    }
    pub fn stateful_sets() -> Self {
        Res::new("apps/v1", "statefulsets")
    }
    pub fn config_maps() -> Self {
        Res::new("v1", "configmaps")
    }
    pub fn secrets() -> Self {
        Res::new("v1", "secrets")
    }
    pub fn services() -> Self {
        Res::new("v1", "services")
    }
    /// `events.k8s.io/v1`, what kube's `Recorder` writes.
    pub fn events() -> Self {
        Res::new("events.k8s.io/v1", "events")
    }
    pub fn pod_disruption_budgets() -> Self {
        Res::new("policy/v1", "poddisruptionbudgets")
    }
    pub fn cache_clusters() -> Self {
        Res::new("ringcache.io/v1alpha1", "cacheclusters")
    }

    /// The API group, "" for the core group.
    pub fn group(&self) -> &str {
        self.group_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    fn is_pods(&self) -> bool {
        self.group_version == "v1" && self.plural == "pods"
    }

    /// How the API server names the resource in messages: `statefulsets.apps`.
    fn qualified(&self) -> String {
        match self.group() {
            "" => self.plural.clone(),
            group => format!("{}.{group}", self.plural),
        }
    }

    fn has_scale(&self) -> bool {
        matches!(
            self.plural.as_str(),
            "statefulsets" | "deployments" | "replicasets" | "cacheclusters"
        )
    }

    fn known_kind(&self) -> Option<&'static str> {
        Some(match self.plural.as_str() {
            "pods" => "Pod",
            "statefulsets" => "StatefulSet",
            "deployments" => "Deployment",
            "replicasets" => "ReplicaSet",
            "configmaps" => "ConfigMap",
            "secrets" => "Secret",
            "services" => "Service",
            "endpoints" => "Endpoints",
            "endpointslices" => "EndpointSlice",
            "events" => "Event",
            "poddisruptionbudgets" => "PodDisruptionBudget",
            "leases" => "Lease",
            "namespaces" => "Namespace",
            "nodes" => "Node",
            "serviceaccounts" => "ServiceAccount",
            "persistentvolumeclaims" => "PersistentVolumeClaim",
            "cacheclusters" => "CacheCluster",
            _ => return None,
        })
    }
}

/// An API error as the API server reports it: HTTP code, machine-readable reason, message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    /// An error with the reason the API server uses for `code`.
    pub fn from_code(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }

    fn not_found(res: &Res, name: &str) -> Self {
        Self::from_code(404, format!("{} \"{name}\" not found", res.qualified()))
    }

    fn already_exists(res: &Res, name: &str) -> Self {
        let mut e = Self::from_code(
            409,
            format!("{} \"{name}\" already exists", res.qualified()),
        );
        e.reason = "AlreadyExists".into();
        e
    }

    fn conflict(res: &Res, name: &str, why: &str) -> Self {
        Self::from_code(
            409,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                res.qualified()
            ),
        )
    }

    fn stale(res: &Res, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::from_code(400, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::from_code(422, message)
    }

    /// The `Status` object the API server sends with the error.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// One HTTP request the server answered (for tests and debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: http::Method,
    /// Path and query, as sent.
    pub uri: String,
    /// The `Content-Type` of the body, if any.
    pub content_type: Option<String>,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    res: Res,
    /// "" for cluster-scoped objects.
    ns: String,
    name: String,
}

impl Key {
    fn new(res: &Res, ns: &str, name: &str) -> Self {
        Key {
            res: res.clone(),
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }
}

struct Entry {
    obj: Value,
    /// Last writer of every leaf field (see the module docs).
    owners: BTreeMap<FieldPath, String>,
}

struct Fault {
    method: http::Method,
    path_prefix: String,
    code: u16,
}

/// Which part of an object a write may change: `/status` writes change only `.status`, main
/// resource writes everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Main,
    Status,
}

impl Scope {
    fn covers(self, path: &[String]) -> bool {
        (path.first().map(String::as_str) == Some("status")) == (self == Scope::Status)
    }
}

/// How a write assigns field ownership.
enum Owning {
    /// Leaves whose value changed now belong to the writer (update, merge and JSON patch).
    Diff,
    /// These leaves (the applied configuration's) belong to the writer, changed or not.
    Apply(Vec<FieldPath>),
}

/// What a delete did.
enum Deleted {
    /// The object is still there, now with a `deletionTimestamp` (pods).
    Terminating(Value),
    /// The object is gone; this was its last state.
    Removed(Value),
}

#[derive(Default)]
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    precondition_uid: Option<String>,
    precondition_resource_version: Option<String>,
    dry_run: bool,
}

struct State {
    objects: BTreeMap<Key, Entry>,
    resource_version: u64,
    uids: u64,
    /// Seeds `generateName` suffixes; fixed so a simulation replays identically.
    rng: u64,
    kinds: HashMap<Res, String>,
    faults: Vec<Fault>,
    log: VecDeque<RequestRecord>,
    notify: watch::Sender<u64>,
}

/// The fake API server. Clones share one store.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    pub fn new() -> Self {
        let (notify, _) = watch::channel(0);
        FakeApi {
            state: Arc::new(Mutex::new(State {
                objects: BTreeMap::new(),
                resource_version: 0,
                uids: 0,
                rng: 0x9E37_79B9_7F4A_7C15,
                kinds: HashMap::new(),
                faults: Vec::new(),
                log: VecDeque::new(),
                notify,
            })),
        }
    }

    /// A `kube::Client` whose requests this server answers in memory (default namespace
    /// `default`). Must be called inside a tokio runtime: the client spawns its buffer task.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |request| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.serve(request).await) }
        });
        kube::Client::new(service, "default")
    }

    pub fn get(&self, res: &Res, ns: &str, name: &str) -> Option<Value> {
        let st = self.state.lock();
        st.objects
            .get(&Key::new(res, ns, name))
            .map(|e| e.obj.clone())
    }

    /// Objects of `res` in `ns` (all namespaces when `None`) matching the label selector, in
    /// namespace/name order. A selector that does not parse matches nothing (and is logged).
    pub fn list(&self, res: &Res, ns: Option<&str>, label_selector: Option<&str>) -> Vec<Value> {
        let selector = match Selector::parse(label_selector.unwrap_or_default()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "FakeApi::list: bad label selector");
                return Vec::new();
            }
        };
        self.state
            .lock()
            .list(res, ns, &selector, &Selector::default())
    }

    /// Creates an object as a POST would, except that `.status` is kept, so a test or
    /// stand-in can seed it. `metadata.name` or `metadata.generateName` is required.
    pub fn create(&self, res: &Res, ns: &str, obj: Value) -> Result<Value, ApiError> {
        self.state
            .lock()
            .create(res, ns, obj, SIM_MANAGER, true, false)
    }

    /// Changes an object in place like a PUT to the main resource: `.status` changes made by
    /// `f` are discarded, `resourceVersion` moves if anything changed, `generation` if `.spec`
    /// did. `f` runs under the store's lock and must not call back into this `FakeApi`.
    pub fn update(
        &self,
        res: &Res,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.update_scoped(res, ns, name, Scope::Main, f)
    }

    /// Like [`FakeApi::update`] through the `/status` subresource: only `.status` changes are
    /// kept (`f` sees the whole object).
    pub fn update_status(
        &self,
        res: &Res,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.update_scoped(res, ns, name, Scope::Status, f)
    }

    fn update_scoped(
        &self,
        res: &Res,
        ns: &str,
        name: &str,
        scope: Scope,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.state
            .lock()
            .write(&Key::new(res, ns, name), scope, SIM_MANAGER, false, |e| {
                let mut obj = e.obj.clone();
                f(&mut obj);
                Ok((obj, Owning::Diff))
            })
    }

    /// A JSON merge patch of the main resource by `manager`, as `kubectl rollout restart`
    /// or `kubectl annotate` send. A `metadata.resourceVersion` in the patch is a precondition.
    pub fn merge_patch(
        &self,
        res: &Res,
        ns: &str,
        name: &str,
        manager: &str,
        patch: Value,
    ) -> Result<Value, ApiError> {
        self.state
            .lock()
            .merge(&Key::new(res, ns, name), Scope::Main, manager, patch, false)
    }

    /// Server-side apply of the main resource by `manager` (creates the object if missing),
    /// as `kubectl apply --server-side` would. The name comes from `config.metadata.name`.
    pub fn apply(
        &self,
        res: &Res,
        ns: &str,
        manager: &str,
        config: Value,
    ) -> Result<Value, ApiError> {
        let name = config
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::bad_request("metadata.name is required"));
        }
        let key = Key::new(res, ns, &name);
        let (obj, _) = self
            .state
            .lock()
            .apply(&key, Scope::Main, manager, config, false)?;
        Ok(obj)
    }

    /// Deletes as a DELETE with default options would: a pod gets a `deletionTimestamp` and
    /// `deletionGracePeriodSeconds` and stays until [`FakeApi::remove`]; anything else goes at
    /// once. Returns the object as it is after the call (or was, when removed).
    pub fn delete(&self, res: &Res, ns: &str, name: &str) -> Result<Value, ApiError> {
        match self
            .state
            .lock()
            .delete(&Key::new(res, ns, name), &DeleteOptions::default())?
        {
            Deleted::Terminating(obj) | Deleted::Removed(obj) => Ok(obj),
        }
    }

    /// Really removes an object (the kubelet's final step for a terminating pod).
    pub fn remove(&self, res: &Res, ns: &str, name: &str) -> Option<Value> {
        self.state.lock().remove(&Key::new(res, ns, name))
    }

    /// Deletes (as [`FakeApi::delete`]) every object with an owner reference to `uid`: a
    /// one-level stand-in for the garbage collector. Returns how many were deleted.
    pub fn delete_owned_by(&self, uid: &str) -> usize {
        let mut st = self.state.lock();
        let owned: Vec<Key> = st
            .objects
            .iter()
            .filter(|(_, e)| {
                e.obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        owned
            .iter()
            .filter(|k| st.delete(k, &DeleteOptions::default()).is_ok())
            .count()
    }

    /// The current (global) resource version.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().resource_version
    }

    /// A receiver of the resource version, updated after every change to any object, so a
    /// stand-in can `changed().await` instead of polling.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.state.lock().notify.subscribe()
    }

    /// Who last wrote each field of an object, as `"spec.replicas" -> manager`.
    pub fn field_owners(&self, res: &Res, ns: &str, name: &str) -> BTreeMap<String, String> {
        let st = self.state.lock();
        st.objects
            .get(&Key::new(res, ns, name))
            .map(|e| {
                e.owners
                    .iter()
                    .map(|(path, manager)| (path.join("."), manager.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The HTTP requests answered so far (the latest 10 000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.lock().log.iter().cloned().collect()
    }

    /// Makes the next HTTP request with this method whose path starts with `path_prefix`
    /// fail with `code`, a 4xx or 5xx (e.g. 409 to exercise conflict handling), answered with
    /// the usual `Status` body. Faults queue up; each fires once. Direct Rust calls are never
    /// affected.
    pub fn fail_next(&self, method: http::Method, path_prefix: &str, code: u16) {
        self.state.lock().faults.push(Fault {
            method,
            path_prefix: path_prefix.to_string(),
            code,
        });
    }
}

fn now() -> String {
    // The API server's metav1.Time has second precision.
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let Value::Object(map) = obj else {
        return None;
    };
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut()
}

/// Whether a field takes part in ownership (identity and server-set fields do not).
fn tracked(path: &[String]) -> bool {
    match path.first().map(String::as_str) {
        Some("apiVersion" | "kind") | None => false,
        Some("metadata") => path
            .get(1)
            .is_some_and(|f| !SYSTEM_METADATA.contains(&f.as_str())),
        Some(_) => true,
    }
}

/// Drops the server-set metadata a client may have sent along.
fn scrub_system_metadata(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        for field in SYSTEM_METADATA {
            if !matches!(field, "name" | "namespace" | "generateName") {
                meta.remove(field);
            }
        }
    }
}

/// The stored object with a write's candidate folded in, restricted to the write's scope,
/// with identity and server-set metadata taken from the stored object.
fn finalize(old: &Value, candidate: Value, scope: Scope) -> Value {
    let mut new = match scope {
        Scope::Main => {
            let mut new = candidate;
            set_or_remove(&mut new, "status", old.get("status").cloned());
            new
        }
        Scope::Status => {
            let mut new = old.clone();
            set_or_remove(&mut new, "status", candidate.get("status").cloned());
            new
        }
    };
    for field in ["apiVersion", "kind"] {
        set_or_remove(&mut new, field, old.get(field).cloned());
    }
    let old_meta = old.get("metadata");
    if let Some(meta) = meta_mut(&mut new) {
        for field in SYSTEM_METADATA {
            match old_meta.and_then(|m| m.get(field)) {
                Some(v) => meta.insert(field.to_string(), v.clone()),
                None => meta.remove(field),
            };
        }
    }
    new
}

fn owners_after(
    old_owners: &BTreeMap<FieldPath, String>,
    old: &Value,
    new: &Value,
    manager: &str,
    owning: Owning,
) -> BTreeMap<FieldPath, String> {
    let mut owners = old_owners.clone();
    let live: BTreeSet<FieldPath> = leaves(new).into_iter().filter(|p| tracked(p)).collect();
    match owning {
        Owning::Diff => {
            for path in &live {
                if lookup(old, path) != lookup(new, path) {
                    owners.insert(path.clone(), manager.to_string());
                }
            }
        }
        Owning::Apply(paths) => {
            for path in paths {
                owners.insert(path, manager.to_string());
            }
        }
    }
    owners.retain(|path, _| live.contains(path));
    owners
}

impl State {
    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.notify.send_replace(self.resource_version);
        self.resource_version
    }

    fn kind_of(&self, res: &Res) -> String {
        if let Some(kind) = res.known_kind() {
            return kind.to_string();
        }
        if let Some(kind) = self.kinds.get(res) {
            return kind.clone();
        }
        // Last resort for a resource never seen with a kind: `widgets` -> `Widget`.
        let singular = res.plural.strip_suffix('s').unwrap_or(&res.plural);
        let mut chars = singular.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }

    fn generate_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        // splitmix64: a deterministic sequence is all `generateName` needs.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (0..5)
            .map(|i| {
                let digit = (z >> (i * 8)) % ALPHABET.len() as u64;
                char::from(ALPHABET[digit as usize])
            })
            .collect()
    }

    fn list(
        &self,
        res: &Res,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| &k.res == res && ns.is_none_or(|ns| k.ns == ns))
            .filter(|(_, e)| labels.matches_labels(&e.obj) && fields.matches_fields(&e.obj))
            .map(|(_, e)| e.obj.clone())
            .collect()
    }

    /// `keep_status` says whether the body's `.status` survives: a POST drops it, as the API
    /// server does for kinds with a status subresource.
    fn create(
        &mut self,
        res: &Res,
        ns: &str,
        mut obj: Value,
        manager: &str,
        keep_status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be a JSON object"));
        }
        if meta_str(&obj, "resourceVersion").is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if let Some(body_ns) = meta_str(&obj, "namespace")
            && body_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
            )));
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => {
                let prefix = prefix.to_string();
                // Retry on the (unlikely) collision, as the API server's generator does.
                let mut name = format!("{prefix}{}", self.generate_suffix());
                for _ in 0..8 {
                    if !self.objects.contains_key(&Key::new(res, ns, &name)) {
                        break;
                    }
                    name = format!("{prefix}{}", self.generate_suffix());
                }
                name
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "metadata.name or metadata.generateName is required",
                ));
            }
        };
        let key = Key::new(res, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(res, &name));
        }

        scrub_system_metadata(&mut obj);
        if !keep_status {
            set_or_remove(&mut obj, "status", None);
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(kind) if !kind.is_empty() => {
                self.kinds.insert(res.clone(), kind.to_string());
            }
            _ => set_or_remove(&mut obj, "kind", Some(Value::from(self.kind_of(res)))),
        }
        if obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            set_or_remove(
                &mut obj,
                "apiVersion",
                Some(Value::from(res.group_version.as_str())),
            );
        }
        let has_spec = obj.get("spec").is_some();
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uids);
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("name".into(), Value::from(name.as_str()));
            if ns.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), Value::from(ns));
            }
            meta.insert("uid".into(), Value::from(uid));
            meta.insert("creationTimestamp".into(), Value::from(now()));
            if has_spec {
                meta.insert("generation".into(), Value::from(1));
            }
        }
        if dry_run {
            return Ok(obj);
        }
        let rv = self.bump();
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
        }
        let owners = owners_after(&BTreeMap::new(), &Value::Null, &obj, manager, Owning::Diff);
        self.objects.insert(
            key,
            Entry {
                obj: obj.clone(),
                owners,
            },
        );
        Ok(obj)
    }

    /// The one path every change to an existing object takes: `f` proposes the new object
    /// from the stored entry; the proposal is cut to `scope`, server-set fields are restored,
    /// and `resourceVersion`/`generation` move only if something really changed.
    fn write(
        &mut self,
        key: &Key,
        scope: Scope,
        manager: &str,
        dry_run: bool,
        f: impl FnOnce(&Entry) -> Result<(Value, Owning), ApiError>,
    ) -> Result<Value, ApiError> {
        let entry = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(&key.res, &key.name))?;
        let (candidate, owning) = f(entry)?;
        if !candidate.is_object() {
            return Err(ApiError::bad_request("the result must be a JSON object"));
        }
        let old = &entry.obj;
        let mut new = finalize(old, candidate, scope);
        let owners = owners_after(&entry.owners, old, &new, manager, owning);
        let changed = new != *old;
        if changed && new.get("spec") != old.get("spec") {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(meta) = meta_mut(&mut new) {
                meta.insert("generation".into(), Value::from(generation + 1));
            }
        }
        if dry_run {
            return Ok(new);
        }
        if changed {
            let rv = self.bump();
            if let Some(meta) = meta_mut(&mut new) {
                meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
            }
        }
        if let Some(entry) = self.objects.get_mut(key) {
            entry.obj = new.clone();
            entry.owners = owners;
        }
        Ok(new)
    }

    /// A missing object is NotFound before any precondition is looked at, as in the API server.
    fn check_resource_version(&self, key: &Key, wanted: Option<&str>) -> Result<(), ApiError> {
        let entry = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(&key.res, &key.name))?;
        let Some(wanted) = wanted else {
            return Ok(());
        };
        if meta_str(&entry.obj, "resourceVersion") == Some(wanted) {
            Ok(())
        } else {
            Err(ApiError::stale(&key.res, &key.name))
        }
    }

    /// Server-side apply (see the module docs for the approximation). Returns the object and
    /// whether it was created.
    fn apply(
        &mut self,
        key: &Key,
        scope: Scope,
        manager: &str,
        mut config: Value,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "an apply configuration must be a JSON object",
            ));
        }
        for field in ["apiVersion", "kind"] {
            if config
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "{field} must be set in an apply configuration"
                )));
            }
        }
        check_identity(&config, key)?;
        let precondition = meta_str(&config, "resourceVersion").map(String::from);
        scrub_system_metadata(&mut config);
        if scope == Scope::Status {
            config = json!({"status": config.get("status").cloned().unwrap_or(Value::Null)});
        } else {
            set_or_remove(&mut config, "status", None);
        }

        if !self.objects.contains_key(key) {
            if scope == Scope::Status {
                return Err(ApiError::not_found(&key.res, &key.name));
            }
            // A precondition on an object that does not exist cannot hold.
            if precondition.is_some() {
                return Err(ApiError::stale(&key.res, &key.name));
            }
            if let Some(meta) = meta_mut(&mut config) {
                meta.insert("name".into(), Value::from(key.name.as_str()));
            }
            let obj = self.create(&key.res, &key.ns, config, manager, false, dry_run)?;
            return Ok((obj, true));
        }
        self.check_resource_version(key, precondition.as_deref())?;
        let obj = self.write(key, scope, manager, dry_run, |entry| {
            let mut obj = entry.obj.clone();
            let dropped = entry.owners.iter().filter(|(path, owner)| {
                *owner == manager && scope.covers(path) && lookup(&config, path).is_none()
            });
            for (path, _) in dropped {
                remove_pruning(&mut obj, path, |p| entry.owners.contains_key(p));
            }
            merge_patch(&mut obj, &config);
            Ok((obj, Owning::Apply(leaves(&config))))
        })?;
        Ok((obj, false))
    }

    /// JSON merge patch (also used for strategic merge patch). A `metadata.resourceVersion`
    /// in the patch is a precondition, as with the API server.
    fn merge(
        &mut self,
        key: &Key,
        scope: Scope,
        manager: &str,
        mut patch: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let precondition = meta_str(&patch, "resourceVersion").map(String::from);
        self.check_resource_version(key, precondition.as_deref())?;
        scrub_system_metadata(&mut patch);
        self.write(key, scope, manager, dry_run, |entry| {
            let mut obj = entry.obj.clone();
            merge_patch(&mut obj, &patch);
            Ok((obj, Owning::Diff))
        })
    }

    fn json_patch(
        &mut self,
        key: &Key,
        scope: Scope,
        manager: &str,
        ops: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let res = key.res.clone();
        self.write(key, scope, manager, dry_run, |entry| {
            let obj = json::json_patch(&entry.obj, ops)?;
            let wanted = meta_str(&obj, "resourceVersion");
            if wanted.is_some() && wanted != meta_str(&entry.obj, "resourceVersion") {
                return Err(ApiError::stale(&res, &key.name));
            }
            Ok((obj, Owning::Diff))
        })
    }

    /// PUT: the body replaces the object (within `scope`).
    fn replace(
        &mut self,
        key: &Key,
        scope: Scope,
        manager: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        check_identity(&body, key)?;
        self.check_resource_version(key, meta_str(&body, "resourceVersion"))?;
        self.write(key, scope, manager, dry_run, |_| Ok((body, Owning::Diff)))
    }

    fn delete(&mut self, key: &Key, options: &DeleteOptions) -> Result<Deleted, ApiError> {
        let entry = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(&key.res, &key.name))?;
        let obj = &entry.obj;
        if let Some(uid) = &options.precondition_uid
            && meta_str(obj, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                &key.res,
                &key.name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(obj, "uid").unwrap_or_default()
                ),
            ));
        }
        self.check_resource_version(key, options.precondition_resource_version.as_deref())?;
        let graceful = key.res.is_pods() && options.grace_period_seconds != Some(0);
        if !graceful {
            if options.dry_run {
                return Ok(Deleted::Removed(obj.clone()));
            }
            return self
                .remove(key)
                .map(Deleted::Removed)
                .ok_or_else(|| ApiError::not_found(&key.res, &key.name));
        }
        if meta_str(obj, "deletionTimestamp").is_some() {
            return Ok(Deleted::Terminating(obj.clone()));
        }
        let grace = options
            .grace_period_seconds
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        let mut new = obj.clone();
        let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
        if options.dry_run {
            return Ok(Deleted::Terminating(new));
        }
        let rv = self.bump();
        if let Some(meta) = meta_mut(&mut new) {
            meta.insert("deletionTimestamp".into(), Value::from(now()));
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
            // The API server counts the start of graceful deletion as a new generation.
            if let Some(g) = generation {
                meta.insert("generation".into(), Value::from(g + 1));
            }
            meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
        }
        if let Some(entry) = self.objects.get_mut(key) {
            entry.obj = new.clone();
        }
        Ok(Deleted::Terminating(new))
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let entry = self.objects.remove(key)?;
        self.bump();
        Some(entry.obj)
    }

    fn take_fault(&mut self, method: &http::Method, path: &str) -> Option<u16> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == method && path.starts_with(&f.path_prefix))?;
        Some(self.faults.remove(i).code)
    }

    fn record(&mut self, record: RequestRecord) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(record);
    }
}

/// A body's name and namespace, when given, must be the ones in the URL.
fn check_identity(body: &Value, key: &Key) -> Result<(), ApiError> {
    if let Some(name) = meta_str(body, "name")
        && name != key.name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            key.name
        )));
    }
    if let Some(ns) = meta_str(body, "namespace")
        && ns != key.ns
    {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({})",
            key.ns
        )));
    }
    Ok(())
}
