//! A stand-in for the kubelet: every pod of the namespace runs as a real `ringcache-node`
//! process on its own loopback address (127.x.y.z, port 7070 as in a pod), with its volumes as
//! directories (ConfigMap and Secret files written like the kubelet writes them, the ring file
//! kept up to date), its environment resolved (field references, mount paths), readiness taken
//! from the process's `/readyz`, containers restarted in place when the process dies, and pod
//! deletion carried out the kubelet's way: preStop, SIGTERM, the grace period, SIGKILL, then the
//! pod object is removed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::apiserver::{FakeApi, Res};

/// The port every node listens on, as in a pod.
pub const NODE_PORT: u16 = 7070;

#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// Readiness probe period when the pod's probe does not set one (the StatefulSet's does:
    /// the pod spec's `periodSeconds` is used, as a kubelet would).
    pub probe_period: Duration,
    /// How long the preStop hook sleeps before SIGTERM (the StatefulSet sets 5 s; shorter here
    /// keeps scenarios quick while still giving the operator time to mark the member down).
    pub pre_stop: Duration,
    /// Termination grace after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Back-off before a dead container is started again in place.
    pub restart_delay: Duration,
    /// Longest delay between a probe's new result and the pod status saying so (a real
    /// kubelet's status manager writes asynchronously); each delay is drawn from `seed`.
    pub status_lag: Duration,
    /// Longest delay before the StatefulSet controller stand-in acts on a spec change (and its
    /// status reflects it), drawn from `seed`.
    pub controller_lag: Duration,
    /// Seed of the lags: `RINGCACHE_SIM_SEED` when set, so a failing run can be repeated.
    pub seed: u64,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        KubeletOptions {
            probe_period: Duration::from_millis(250),
            pre_stop: Duration::from_millis(1500),
            grace: Duration::from_secs(25),
            restart_delay: Duration::from_millis(200),
            status_lag: Duration::from_millis(500),
            controller_lag: Duration::from_secs(2),
            seed: std::env::var("RINGCACHE_SIM_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5eed),
        }
    }
}

/// A reproducible delay in `0..=max` from a counter and a seed.
pub fn seeded_lag(seed: u64, n: u64, max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    // splitmix64
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Duration::from_millis((z ^ (z >> 31)) % (ms + 1))
}

struct Running {
    uid: String,
    ip: String,
    dir: PathBuf,
    child: Option<Child>,
    /// When a dead container may start again.
    restart_at: Option<Instant>,
    restarts: u32,
    ready: bool,
    last_probe: Option<Instant>,
    /// The pod spec's readiness probe period.
    probe_every: Duration,
    /// `https` for a probe with `scheme: HTTPS`.
    probe_scheme: &'static str,
    terminating: bool,
    /// Mount path → host directory.
    mounts: Vec<(String, PathBuf)>,
}

/// The kubelet: owns the node processes it starts and stops only those.
pub struct Kubelet {
    api: FakeApi,
    ns: String,
    root: PathBuf,
    binary: PathBuf,
    opts: KubeletOptions,
    /// 127.A.B.x addresses: A.B fixed per kubelet, x counts pod starts.
    net: (u8, u8),
    next_host: AtomicU32,
    pods: Arc<Mutex<HashMap<String, Running>>>,
    /// Readiness writes so far (numbers the lags drawn for them).
    status_writes: AtomicU32,
    http: reqwest::Client,
}

impl Kubelet {
    pub fn new(
        api: FakeApi,
        ns: &str,
        root: &Path,
        binary: &Path,
        net: (u8, u8),
        opts: KubeletOptions,
    ) -> Arc<Kubelet> {
        Arc::new(Kubelet {
            api,
            ns: ns.to_string(),
            root: root.to_path_buf(),
            binary: binary.to_path_buf(),
            opts,
            net,
            next_host: AtomicU32::new(2),
            pods: Arc::new(Mutex::new(HashMap::new())),
            status_writes: AtomicU32::new(0),
            http: crate::probe_client(Duration::from_secs(1)),
        })
    }

    /// Runs the kubelet loop until the task is aborted (dropping it kills every process).
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let k = self.clone();
        tokio::spawn(async move {
            loop {
                k.sync().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    /// The pod's address, while the kubelet runs it.
    pub fn ip_of(&self, pod: &str) -> Option<String> {
        self.pods.lock().get(pod).map(|r| r.ip.clone())
    }

    /// SIGKILLs the pod's process; the kubelet restarts the container in place (same pod, same
    /// address), as after an OOM kill or a crash.
    pub fn kill_process(&self, pod: &str) -> bool {
        let mut pods = self.pods.lock();
        let Some(r) = pods.get_mut(pod) else {
            return false;
        };
        let Some(child) = r.child.as_mut() else {
            return false;
        };
        child.start_kill().is_ok()
    }

    /// Stops every process (test teardown).
    pub fn stop_all(&self) {
        for r in self.pods.lock().values_mut() {
            if let Some(c) = r.child.as_mut() {
                let _ = c.start_kill();
            }
        }
    }

    async fn sync(self: &Arc<Self>) {
        let pods = self.api.list(&Res::pods(), Some(&self.ns), None);
        let names: Vec<String> = pods
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        // Pods removed from the API: nothing of theirs may keep running.
        {
            let mut running = self.pods.lock();
            running.retain(|name, r| {
                let keep = names.contains(name);
                if !keep && let Some(c) = r.child.as_mut() {
                    let _ = c.start_kill();
                }
                keep
            });
        }
        for pod in &pods {
            let Some(name) = pod["metadata"]["name"].as_str() else {
                continue;
            };
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
            let known = self.pods.lock().get(name).is_some_and(|r| r.uid == uid);
            if !known {
                if let Err(e) = self.start_pod(name, pod) {
                    tracing::warn!(pod = name, error = %e, "pod not started");
                }
                continue;
            }
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                self.terminate(name);
            }
            self.sync_files(name, pod);
            self.restart_if_dead(name);
            self.probe(name).await;
        }
    }

    fn start_pod(&self, name: &str, pod: &Value) -> Result<(), String> {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        if host > 254 {
            return Err("out of loopback addresses".into());
        }
        let ip = format!("127.{}.{}.{host}", self.net.0, self.net.1);
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let dir = self.root.join("pods").join(format!("{name}-{host}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let container = &pod["spec"]["containers"][0];
        let volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut mounts = Vec::new();
        for m in container["volumeMounts"].as_array().into_iter().flatten() {
            let (Some(vname), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
                continue;
            };
            let host_dir = if volumes.iter().any(|v| v["name"] == vname) {
                dir.join("volumes").join(vname)
            } else {
                // A volumeClaimTemplate: the claim outlives the pod, as a PVC does.
                self.root.join("pvc").join(format!("{vname}-{name}"))
            };
            std::fs::create_dir_all(&host_dir).map_err(|e| e.to_string())?;
            mounts.push((path.to_string(), host_dir));
        }
        // Longest mount path first, so that path rewriting picks the most specific mount.
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let probe_every = container["readinessProbe"]["periodSeconds"]
            .as_u64()
            .map_or(self.opts.probe_period, Duration::from_secs);
        let probe_scheme = match container["readinessProbe"]["httpGet"]["scheme"].as_str() {
            Some("HTTPS") => "https",
            _ => "http",
        };
        let r = Running {
            probe_every,
            probe_scheme,
            uid: uid.to_string(),
            ip: ip.clone(),
            dir,
            child: None,
            restart_at: Some(Instant::now()),
            restarts: 0,
            ready: false,
            last_probe: None,
            terminating: false,
            mounts,
        };
        self.pods.lock().insert(name.to_string(), r);
        self.sync_files(name, pod);
        let _ = self.api.update_status(&Res::pods(), &self.ns, name, |p| {
            p["status"] = json!({
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "node", "ready": false, "restartCount": 0}],
            });
        });
        self.restart_if_dead(name);
        Ok(())
    }

    /// Writes ConfigMap and Secret volume files (again when their content changed): written to
    /// a temporary name and renamed, as atomically as the kubelet's symlink swap.
    fn sync_files(&self, name: &str, pod: &Value) {
        let dirs: BTreeMap<String, PathBuf> = {
            let pods = self.pods.lock();
            let Some(r) = pods.get(name) else { return };
            r.dir
                .join("volumes")
                .read_dir()
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
                .collect()
        };
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let Some(dir) = v["name"].as_str().and_then(|n| dirs.get(n)) else {
                continue;
            };
            let files: Vec<(String, Vec<u8>)> = if let Some(cm) = v["configMap"]["name"].as_str() {
                let Some(obj) = self.api.get(&Res::config_maps(), &self.ns, cm) else {
                    continue;
                };
                let data = &obj["data"];
                match v["configMap"]["items"].as_array() {
                    Some(items) => items
                        .iter()
                        .filter_map(|i| {
                            let value = data[i["key"].as_str()?].as_str()?;
                            Some((i["path"].as_str()?.to_string(), value.as_bytes().to_vec()))
                        })
                        .collect(),
                    None => data
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.as_bytes().to_vec())))
                        .collect(),
                }
            } else if let Some(sec) = v["secret"]["secretName"].as_str() {
                let Some(secret) = self
                    .api
                    .get(&Res::secrets(), &self.ns, sec)
                    .and_then(|s| serde_json::from_value::<Secret>(s).ok())
                else {
                    continue;
                };
                secret
                    .data
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            } else {
                continue;
            };
            for (file, bytes) in files {
                let path = dir.join(&file);
                if std::fs::read(&path).is_ok_and(|old| old == bytes) {
                    continue;
                }
                let tmp = dir.join(format!(".{file}.tmp"));
                if std::fs::write(&tmp, &bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
        }
    }

    /// Starts the container if it is not running and its back-off has passed.
    fn restart_if_dead(&self, name: &str) {
        let Some(pod) = self.api.get(&Res::pods(), &self.ns, name) else {
            return;
        };
        let mut pods = self.pods.lock();
        let Some(r) = pods.get_mut(name) else { return };
        if r.terminating {
            return;
        }
        if let Some(child) = r.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            tracing::info!(pod = name, %status, "container exited; restarting in place");
            r.child = None;
            r.ready = false;
            r.restart_at = Some(Instant::now() + self.opts.restart_delay);
            r.restarts += 1;
            let restarts = r.restarts;
            drop(pods);
            let _ = self.api.update_status(&Res::pods(), &self.ns, name, |p| {
                p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
                p["status"]["containerStatuses"] =
                    json!([{"name": "node", "ready": false, "restartCount": restarts}]);
            });
            return;
        }
        if r.child.is_some() || r.restart_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        match self.spawn_process(name, &pod, r) {
            Ok(child) => {
                r.child = Some(child);
                r.restart_at = None;
            }
            Err(e) => {
                tracing::warn!(pod = name, error = %e, "container did not start");
                r.restart_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    fn spawn_process(&self, name: &str, pod: &Value, r: &Running) -> Result<Child, String> {
        let container = &pod["spec"]["containers"][0];
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear().kill_on_drop(true);
        for e in container["env"].as_array().into_iter().flatten() {
            let Some(key) = e["name"].as_str() else {
                continue;
            };
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => v.to_string(),
                (None, Some("metadata.name")) => name.to_string(),
                (None, Some("metadata.namespace")) => self.ns.clone(),
                (None, Some("status.podIP")) => r.ip.clone(),
                _ => continue,
            };
            cmd.env(key, self.rewrite(key, &value, r));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(r.dir.join("node.log"))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdout(log).stderr(err);
        cmd.spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))
    }

    /// Maps an environment value of the pod to this machine: the listen address to the pod's
    /// loopback address, paths under a mount to its host directory.
    fn rewrite(&self, key: &str, value: &str, r: &Running) -> String {
        if key == "RINGCACHE_LISTEN" || key == "RINGCACHE_RESP_LISTEN" {
            return value.replacen("0.0.0.0", &r.ip, 1);
        }
        for (mount, host) in &r.mounts {
            if let Some(rest) = value.strip_prefix(mount.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", host.display());
            }
        }
        value.to_string()
    }

    fn pods_handle(&self) -> Arc<Mutex<HashMap<String, Running>>> {
        self.pods.clone()
    }

    /// Readiness from the process's `/readyz`, written to the pod's Ready condition on change.
    async fn probe(&self, name: &str) {
        let (ip, scheme, due) = {
            let mut pods = self.pods.lock();
            let Some(r) = pods.get_mut(name) else { return };
            let due =
                r.child.is_some() && r.last_probe.is_none_or(|t| t.elapsed() >= r.probe_every);
            if due {
                r.last_probe = Some(Instant::now());
            }
            (r.ip.clone(), r.probe_scheme, due)
        };
        if !due {
            return;
        }
        let ready = self
            .http
            .get(format!("{scheme}://{ip}:{NODE_PORT}/readyz"))
            .send()
            .await
            .is_ok_and(|resp| resp.status().is_success());
        let (changed, restarts) = {
            let mut pods = self.pods.lock();
            let Some(r) = pods.get_mut(name) else { return };
            let changed = r.ready != ready && r.child.is_some();
            if changed {
                r.ready = ready;
            }
            (changed, r.restarts)
        };
        if changed {
            let lag = seeded_lag(
                self.opts.seed,
                u64::from(self.status_writes.fetch_add(1, Ordering::Relaxed)),
                self.opts.status_lag,
            );
            let (api, ns, name) = (self.api.clone(), self.ns.clone(), name.to_string());
            let this = self.pods_handle();
            tokio::spawn(async move {
                tokio::time::sleep(lag).await;
                // Written only if still the latest result: a later flip writes its own.
                let current = this.lock().get(&name).map(|r| r.ready);
                if current != Some(ready) {
                    return;
                }
                let status = if ready { "True" } else { "False" };
                let _ = api.update_status(&Res::pods(), &ns, &name, |p| {
                    p["status"]["conditions"] = json!([{"type": "Ready", "status": status}]);
                    p["status"]["containerStatuses"] =
                        json!([{"name": "node", "ready": ready, "restartCount": restarts}]);
                });
            });
        }
    }

    /// A pod with a deletionTimestamp: preStop, SIGTERM, grace, SIGKILL, then the pod is gone.
    fn terminate(self: &Arc<Self>, name: &str) {
        let (child, uid) = {
            let mut pods = self.pods.lock();
            let Some(r) = pods.get_mut(name) else { return };
            if r.terminating {
                return;
            }
            r.terminating = true;
            (r.child.take(), r.uid.clone())
        };
        let k = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Some(mut child) = child {
                tokio::time::sleep(k.opts.pre_stop).await;
                if let Some(pid) = child.id() {
                    // SIGTERM to the process this kubelet started.
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(pid.to_string())
                        .status()
                        .await;
                }
                if tokio::time::timeout(k.opts.grace, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            let mut pods = k.pods.lock();
            if pods.get(&name).is_some_and(|r| r.uid == uid) {
                pods.remove(&name);
            }
            drop(pods);
            let same_pod = k
                .api
                .get(&Res::pods(), &k.ns, &name)
                .is_some_and(|p| p["metadata"]["uid"] == uid.as_str());
            if same_pod {
                k.api.remove(&Res::pods(), &k.ns, &name);
            }
        });
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop_all();
    }
}
