//! Talking to ringcache nodes through the API server's service and pod proxy.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::{Method, Request, StatusCode};
use kube::Client;
use kube::client::Body;

use crate::error::E2eError;
use crate::harness::within;
use crate::keys;
use crate::paths;

/// Where a request goes: the cluster's client Service (any node) or one pod; `https` for a
/// cluster serving TLS (`spec.tls`).
#[derive(Debug, Clone)]
pub enum Target {
    Service {
        ns: String,
        name: String,
        https: bool,
    },
    Pod {
        ns: String,
        name: String,
        https: bool,
    },
}

impl Target {
    /// For progress lines: `service NS/NAME` or `pod NS/NAME`.
    pub fn describe(&self) -> String {
        match self {
            Target::Service { ns, name, .. } => format!("service {ns}/{name}"),
            Target::Pod { ns, name, .. } => format!("pod {ns}/{name}"),
        }
    }

    pub fn path(&self, rest: &str) -> String {
        match self {
            Target::Service { ns, name, https } => paths::service_proxy(ns, name, *https, rest),
            Target::Pod { ns, name, https } => paths::pod_proxy(ns, name, *https, rest),
        }
    }
}

/// The longest one request to a node may take, through the API server's proxy and the node's own
/// forwarding and replication. A request without an answer by then counts as unanswered.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// A raw response: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// The node's error code when the body is a node's error (DESIGN.md: JSON
    /// `{"error": "...", "code": "..."}` with both strings). The API server's own errors are
    /// `Status` objects whose `code` is a number, and a proxy's gateway errors are not JSON, so
    /// this tells an answer the node wrote from one written on the way to it.
    pub fn node_error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        if v.get("kind").is_some() || !v.get("error").is_some_and(|e| e.is_string()) {
            return None;
        }
        v.get("code").and_then(|c| c.as_str()).map(str::to_string)
    }
}

/// Who answered a request, and how. Counted apart because they mean different things during a
/// rollout: a node's 503 is the cluster refusing a write, while a proxy error or no answer is the
/// path to a pod that is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A 2xx answer.
    Success,
    /// 503 with the node's JSON error: the node itself refused (e.g. an owner failed mid-write).
    NodeUnavailable,
    /// Another error status with the node's JSON error (e.g. 404 not_found, 507).
    NodeError(u16),
    /// An error status the node did not write: the API server's proxy (502/503/504 while the
    /// Service's endpoints catch up or a pod goes away, or a `Status` object).
    Proxy(u16),
    /// No answer: connection error, a stream cut off, or no answer within [`NODE_TIMEOUT`].
    NoAnswer,
}

impl Outcome {
    pub fn of(result: &Result<Reply, E2eError>) -> Outcome {
        match result {
            Err(_) => Outcome::NoAnswer,
            Ok(r) if r.status.is_success() => Outcome::Success,
            Ok(r) => match (r.node_error_code(), r.status) {
                (Some(_), StatusCode::SERVICE_UNAVAILABLE) => Outcome::NodeUnavailable,
                (Some(_), status) => Outcome::NodeError(status.as_u16()),
                (None, status) => Outcome::Proxy(status.as_u16()),
            },
        }
    }

    /// Worth another attempt: the node asked for a retry (503), or the way to it failed
    /// (gateway errors, no answer). Anything else would fail the same way again.
    pub fn retryable(self) -> bool {
        match self {
            Outcome::NodeUnavailable | Outcome::NoAnswer => true,
            Outcome::Proxy(status) => (502..=504).contains(&status),
            Outcome::Success | Outcome::NodeError(_) => false,
        }
    }
}

/// One request to a node, answered within [`NODE_TIMEOUT`] (body included) or failed.
pub async fn request(
    client: &Client,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, E2eError> {
    request_within(NODE_TIMEOUT, client, method, path, body).await
}

async fn request_within(
    deadline: Duration,
    client: &Client,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, E2eError> {
    let what = format!("{method} {path}");
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body))?;
    let exchange = async {
        let res = client.send(req).await?;
        let status = res.status();
        let body = res.into_body().collect_bytes().await?;
        Ok::<_, E2eError>(Reply {
            status,
            body: body.to_vec(),
        })
    };
    within(deadline, &what, exchange).await
}

fn unexpected(method: &str, path: &str, r: &Reply) -> E2eError {
    E2eError::Http {
        method: method.into(),
        path: path.into(),
        status: r.status.as_u16(),
        body: String::from_utf8_lossy(&r.body).chars().take(300).collect(),
    }
}

/// PUT with up to `attempts` attempts while the failure is [retryable](Outcome::retryable).
/// Returns the error of the last attempt.
pub async fn put(
    client: &Client,
    target: &Target,
    key: &str,
    value: &[u8],
    attempts: u32,
) -> Result<(), E2eError> {
    put_observed(client, target, key, value, attempts, &mut |_| {}).await
}

/// [`put`], telling `observe` the outcome of every attempt (so retried refusals are counted too).
pub async fn put_observed(
    client: &Client,
    target: &Target,
    key: &str,
    value: &[u8],
    attempts: u32,
    observe: &mut (dyn FnMut(Outcome) + Send),
) -> Result<(), E2eError> {
    let path = target.path(&paths::key_path(key));
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let result = request(client, Method::PUT, &path, value.to_vec()).await;
        let outcome = Outcome::of(&result);
        observe(outcome);
        match result {
            Ok(_) if outcome == Outcome::Success => return Ok(()),
            Ok(r) if outcome.retryable() => last = Some(unexpected("PUT", &path, &r)),
            Ok(r) => return Err(unexpected("PUT", &path, &r)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| E2eError::check("PUT never attempted")))
}

/// What one GET of a key found: the value, the node's "not found", or anything else (`Err`).
/// A 404 counts as a missing key only when the node wrote it: a proxy's 404 (no such pod) or an
/// unreadable body must not pass for a deleted key.
pub fn read_of(result: Result<Reply, E2eError>, path: &str) -> Result<Option<Vec<u8>>, E2eError> {
    let r = result?;
    if r.status == StatusCode::OK {
        return Ok(Some(r.body));
    }
    if r.status == StatusCode::NOT_FOUND && r.node_error_code().as_deref() == Some("not_found") {
        return Ok(None);
    }
    Err(unexpected("GET", path, &r))
}

/// GET with retries on [retryable](Outcome::retryable) failures: `Some(value)`, or `None` for
/// the node's 404.
pub async fn get(
    client: &Client,
    target: &Target,
    key: &str,
    attempts: u32,
) -> Result<Option<Vec<u8>>, E2eError> {
    let path = target.path(&paths::key_path(key));
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let result = request(client, Method::GET, &path, Vec::new()).await;
        let retry = Outcome::of(&result).retryable();
        match read_of(result, &path) {
            Ok(found) => return Ok(found),
            Err(e) if retry => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| E2eError::check("GET never attempted")))
}

/// The incarnation a node reports on `/healthz` (DESIGN.md: a fresh id per process start).
pub async fn incarnation(client: &Client, target: &Target) -> Result<String, E2eError> {
    let path = target.path("/healthz");
    let r = request(client, Method::GET, &path, Vec::new()).await?;
    if r.status != StatusCode::OK {
        return Err(unexpected("GET", &path, &r));
    }
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("incarnation")?.as_str().map(str::to_string))
        .ok_or_else(|| {
            E2eError::check(format!(
                "GET {path}: no incarnation in {:?}",
                String::from_utf8_lossy(&r.body)
            ))
        })
}

/// Writes keys `set-000000..n` (value of `round`) with `concurrency` requests in flight.
pub async fn write_keys(
    client: &Client,
    target: &Target,
    set: &str,
    n: usize,
    round: u32,
    concurrency: usize,
) -> Result<(), E2eError> {
    let results: Vec<Result<(), E2eError>> = stream::iter(0..n)
        .map(|i| async move {
            let k = keys::key(set, i);
            put(client, target, &k, &keys::value(&k, round), 5).await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(E2eError::check(format!(
            "{} of {n} writes failed; first: {}",
            failures.len(),
            failures[0]
        )))
    }
}

/// Reads back the given key indices and returns every key that is missing, wrong or unreadable
/// (empty = all good). `attempts` bounds retries of transient errors per key.
pub async fn verify_keys(
    client: &Client,
    target: &Target,
    set: &str,
    indices: impl IntoIterator<Item = usize>,
    round: u32,
    concurrency: usize,
    attempts: u32,
) -> Vec<String> {
    stream::iter(indices)
        .map(|i| async move {
            let k = keys::key(set, i);
            match get(client, target, &k, attempts).await {
                Ok(Some(v)) if v == keys::value(&k, round) => None,
                Ok(Some(v)) => Some(format!(
                    "{k}: wrong value {:?}",
                    String::from_utf8_lossy(&v)
                )),
                Ok(None) => Some(format!("{k}: missing")),
                Err(e) => Some(format!("{k}: {e}")),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Summarises a list of failures for an assertion message (count plus the first few).
pub fn describe_failures(what: &str, failures: &[String]) -> String {
    let first: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
    format!(
        "{what}: {} failures, e.g. {}",
        failures.len(),
        first.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            body: body.as_bytes().to_vec(),
        }
    }

    const NODE_503: &str = r#"{"error":"no owner could take the write","code":"unavailable"}"#;
    const APISERVER_503: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no endpoints available for service \"demo:http\"","reason":"ServiceUnavailable","code":503}"#;

    #[test]
    fn a_503_is_the_nodes_only_with_the_nodes_json_error() {
        assert_eq!(
            Outcome::of(&Ok(reply(503, NODE_503))),
            Outcome::NodeUnavailable
        );
        // The API server's proxy: a Status object, whose code is a number.
        assert_eq!(
            Outcome::of(&Ok(reply(503, APISERVER_503))),
            Outcome::Proxy(503)
        );
        // A gateway error page, or nothing at all.
        assert_eq!(
            Outcome::of(&Ok(reply(503, "upstream connect error"))),
            Outcome::Proxy(503)
        );
        assert_eq!(Outcome::of(&Ok(reply(503, ""))), Outcome::Proxy(503));
        // JSON that merely looks similar is not the node's.
        assert_eq!(
            Outcome::of(&Ok(reply(503, r#"{"error":"x","code":503}"#))),
            Outcome::Proxy(503)
        );
    }

    #[test]
    fn outcomes_tell_success_node_errors_proxy_errors_and_silence_apart() {
        assert_eq!(Outcome::of(&Ok(reply(204, ""))), Outcome::Success);
        assert_eq!(
            Outcome::of(&Ok(reply(
                507,
                r#"{"error":"full","code":"insufficient_storage"}"#
            ))),
            Outcome::NodeError(507)
        );
        assert_eq!(
            Outcome::of(&Ok(reply(502, "Error trying to reach service"))),
            Outcome::Proxy(502)
        );
        assert_eq!(Outcome::of(&Ok(reply(504, ""))), Outcome::Proxy(504));
        let timeout = Err(E2eError::NoAnswer {
            what: "PUT /x".into(),
            after: NODE_TIMEOUT,
        });
        assert_eq!(Outcome::of(&timeout), Outcome::NoAnswer);
    }

    #[test]
    fn refusals_and_broken_paths_are_retried_but_definite_answers_are_not() {
        assert!(Outcome::NodeUnavailable.retryable());
        assert!(Outcome::NoAnswer.retryable());
        assert!(Outcome::Proxy(502).retryable());
        assert!(Outcome::Proxy(503).retryable());
        assert!(Outcome::Proxy(504).retryable());
        assert!(!Outcome::Proxy(404).retryable());
        assert!(!Outcome::NodeError(500).retryable());
        assert!(!Outcome::NodeError(400).retryable());
        assert!(!Outcome::Success.retryable());
    }

    #[test]
    fn only_the_nodes_not_found_reads_as_a_missing_key() {
        let node = reply(404, r#"{"error":"key not found","code":"not_found"}"#);
        assert!(matches!(read_of(Ok(node), "/p"), Ok(None)));
        let api = reply(
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
        );
        assert!(read_of(Ok(api), "/p").is_err());
        assert!(read_of(Ok(reply(404, "404 page not found")), "/p").is_err());
        assert!(matches!(read_of(Ok(reply(200, "v")), "/p"), Ok(Some(v)) if v == b"v"));
        assert!(read_of(Ok(reply(503, NODE_503)), "/p").is_err());
    }

    #[test]
    fn targets_build_proxy_paths() {
        let svc = Target::Service {
            ns: "n".into(),
            name: "demo".into(),
            https: false,
        };
        let pod = Target::Pod {
            ns: "n".into(),
            name: "demo-1".into(),
            https: true,
        };
        assert_eq!(
            svc.path("/x"),
            "/api/v1/namespaces/n/services/demo:http/proxy/x"
        );
        assert_eq!(
            pod.path("/x"),
            "/api/v1/namespaces/n/pods/https:demo-1:7070/proxy/x"
        );
    }

    /// A stand-in for the API server on loopback: answers every request with `reply` (raw HTTP)
    /// or, with `None`, never answers; counts the requests it read.
    async fn fake_apiserver(
        reply: Option<&'static str>,
    ) -> (Client, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests here have no body: one ends at its blank line.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            counted.fetch_add(1, Ordering::SeqCst);
                            if let Some(reply) = reply
                                && conn.write_all(reply.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let uri: http::Uri = format!("http://{addr}").parse().expect("a URI");
        let mut config = kube::Config::new(uri);
        crate::harness::configure(&mut config);
        (Client::try_from(config).expect("a client"), hits)
    }

    #[tokio::test]
    async fn a_nodes_503_reaches_the_suite_once_and_is_not_retried_by_the_client() {
        let body = NODE_503;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (client, hits) = fake_apiserver(Some(reply)).await;
        let result = request(&client, Method::GET, "/api/v1/x", Vec::new()).await;
        assert_eq!(Outcome::of(&result), Outcome::NodeUnavailable);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_without_an_answer_fails_at_its_deadline() {
        let (client, hits) = fake_apiserver(None).await;
        let started = std::time::Instant::now();
        let deadline = Duration::from_millis(300);
        let result = request_within(deadline, &client, Method::PUT, "/api/v1/x", Vec::new()).await;
        assert!(
            matches!(result, Err(E2eError::NoAnswer { .. })),
            "{:?}",
            result.err()
        );
        assert_eq!(Outcome::of(&result), Outcome::NoAnswer);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
