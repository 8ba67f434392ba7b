//! Talking to ringcache nodes through the API server's service and pod proxy.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::{Method, Request, StatusCode};
use kube::Client;
use kube::client::Body;

use crate::error::E2eError;
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
    pub fn path(&self, rest: &str) -> String {
        match self {
            Target::Service { ns, name, https } => paths::service_proxy(ns, name, *https, rest),
            Target::Pod { ns, name, https } => paths::pod_proxy(ns, name, *https, rest),
        }
    }
}

/// A raw response: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// A 404 written by the API server itself (a `Status` object: no such service or pod) is not
    /// the node's "key not found", and must not be read as a missing key.
    pub fn is_apiserver_status(&self) -> bool {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("kind")
                    .and_then(|k| k.as_str())
                    .map(|k| k == "Status")
            })
            .unwrap_or(false)
    }
}

pub async fn request(
    client: &Client,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, E2eError> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body))?;
    let res = client.send(req).await?;
    let status = res.status();
    let body = res.into_body().collect_bytes().await?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

fn unexpected(method: &str, path: &str, r: &Reply) -> E2eError {
    E2eError::Http {
        method: method.into(),
        path: path.into(),
        status: r.status.as_u16(),
        body: String::from_utf8_lossy(&r.body).chars().take(300).collect(),
    }
}

/// Is a failure worth retrying? 502/503/504 are what a client sees while a pod goes away or the
/// proxy's endpoint list catches up; DESIGN.md has the node answer 503 for "retry".
fn transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// PUT with a few retries on transient failures. Returns the error of the last attempt.
pub async fn put(
    client: &Client,
    target: &Target,
    key: &str,
    value: &[u8],
    attempts: u32,
) -> Result<(), E2eError> {
    let path = target.path(&paths::key_path(key));
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        match request(client, Method::PUT, &path, value.to_vec()).await {
            Ok(r) if r.status.is_success() => return Ok(()),
            Ok(r) if transient(r.status) => last = Some(unexpected("PUT", &path, &r)),
            Ok(r) => return Err(unexpected("PUT", &path, &r)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| E2eError::check("PUT never attempted")))
}

/// GET with retries on transient failures: `Some(value)`, or `None` for the node's 404.
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
        match request(client, Method::GET, &path, Vec::new()).await {
            Ok(r) if r.status == StatusCode::OK => return Ok(Some(r.body)),
            Ok(r) if r.status == StatusCode::NOT_FOUND && !r.is_apiserver_status() => {
                return Ok(None);
            }
            Ok(r) if transient(r.status) => last = Some(unexpected("GET", &path, &r)),
            Ok(r) => return Err(unexpected("GET", &path, &r)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| E2eError::check("GET never attempted")))
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

    #[test]
    fn apiserver_status_404_is_not_a_missing_key() {
        let api = reply(
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
        );
        assert!(api.is_apiserver_status());
        let node = reply(404, r#"{"error":"key not found","code":"not_found"}"#);
        assert!(!node.is_apiserver_status());
        assert!(!reply(404, "not json").is_apiserver_status());
    }

    #[test]
    fn only_gateway_errors_are_retried() {
        assert!(transient(StatusCode::SERVICE_UNAVAILABLE));
        assert!(transient(StatusCode::BAD_GATEWAY));
        assert!(!transient(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!transient(StatusCode::NOT_FOUND));
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
}
