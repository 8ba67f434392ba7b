//! The operator's calls to the nodes' internal API: push a ring, read migration progress.
//! Behind a trait so reconcile tests use a fake and never touch the network.
//!
//! Two transports: straight to the pod IP (in-cluster), or through the API server's pod proxy
//! (`--node-access=proxy`, for an operator on a laptop). The API server strips the
//! `Authorization` header of proxied requests after authenticating them (and it carries the
//! operator's own credential anyway), so through the proxy the internal token travels in
//! `X-Ringcache-Internal-Token` instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kube::Client;
use ringcache_ring::RingDoc;

use crate::build::PORT;
use crate::observed::MigrationReport;

pub const RING_PATH: &str = "/internal/v1/ring";
pub const MIGRATION_PATH: &str = "/internal/v1/migration";
pub use ringcache_common::protocol::INTERNAL_TOKEN_HEADER as TOKEN_HEADER;
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where a node is: its pod (for the proxy) and its `ip:port` (for direct access), and how to
/// trust it when it serves HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    pub namespace: String,
    pub pod: String,
    pub addr: String,
    pub tls: Option<Arc<NodeTls>>,
}

/// A cluster's TLS: the CA its node certificates chain to and the name they carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeTls {
    pub ca_pem: Vec<u8>,
    pub server_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("request to {pod} failed: {message}")]
    Transport { pod: String, message: String },
    #[error("{pod} answered {status}: {body}")]
    Status {
        pod: String,
        status: u16,
        body: String,
    },
    #[error("{pod} sent an unreadable migration report: {message}")]
    Decode { pod: String, message: String },
}

impl NodeError {
    /// 409 on a ring push: the node already has a newer epoch (it learned it from a peer).
    pub fn is_conflict(&self) -> bool {
        matches!(self, NodeError::Status { status: 409, .. })
    }
}

pub trait NodeApi: Send + Sync {
    fn push_ring<'a>(
        &'a self,
        node: &'a NodeTarget,
        ring: &'a RingDoc,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>>;

    fn migration<'a>(
        &'a self,
        node: &'a NodeTarget,
        token: &'a str,
    ) -> BoxFuture<'a, Result<MigrationReport, NodeError>>;
}

/// Direct HTTP(S) to `<pod ip>:7070`.
pub struct DirectNodes {
    http: reqwest::Client,
    /// One HTTPS client per cluster TLS (CA and name), built on first use.
    https: Mutex<HashMap<NodeTls, reqwest::Client>>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        // Pod IPs are in-cluster addresses; an HTTP(S)_PROXY from the environment must not capture them.
        .no_proxy()
}

impl DirectNodes {
    pub fn new() -> Result<Self, reqwest::Error> {
        ringcache_common::tls::install_crypto_provider();
        Ok(DirectNodes {
            http: builder().build()?,
            https: Mutex::default(),
        })
    }

    /// The client and base URL for `node`.
    fn client(&self, node: &NodeTarget) -> Result<(reqwest::Client, String), NodeError> {
        let Some(tls) = &node.tls else {
            return Ok((self.http.clone(), format!("http://{}", node.addr)));
        };
        let mut cache = self.https.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(tls.as_ref()) {
            return Ok((c.clone(), format!("https://{}", node.addr)));
        }
        let config = ringcache_common::tls::client_config(&tls.ca_pem, Some(&tls.server_name))
            .map_err(|e| transport(&node.pod, e))?;
        let client = builder()
            .tls_backend_preconfigured(config)
            .build()
            .map_err(|e| transport(&node.pod, e))?;
        cache.insert(tls.as_ref().clone(), client.clone());
        Ok((client, format!("https://{}", node.addr)))
    }
}

fn transport(pod: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Transport {
        pod: pod.to_string(),
        message: e.to_string(),
    }
}

impl NodeApi for DirectNodes {
    fn push_ring<'a>(
        &'a self,
        node: &'a NodeTarget,
        ring: &'a RingDoc,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            let (http, base) = self.client(node)?;
            let resp = http
                .put(format!("{base}{RING_PATH}"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(ring.to_json_pretty())
                .send()
                .await
                .map_err(|e| transport(&node.pod, e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let body = resp.text().await.unwrap_or_default();
            Err(NodeError::Status {
                pod: node.pod.clone(),
                status: status.as_u16(),
                body,
            })
        })
    }

    fn migration<'a>(
        &'a self,
        node: &'a NodeTarget,
        token: &'a str,
    ) -> BoxFuture<'a, Result<MigrationReport, NodeError>> {
        Box::pin(async move {
            let (http, base) = self.client(node)?;
            let resp = http
                .get(format!("{base}{MIGRATION_PATH}"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| transport(&node.pod, e))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| transport(&node.pod, e))?;
            if !status.is_success() {
                return Err(NodeError::Status {
                    pod: node.pod.clone(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            serde_json::from_slice(&body).map_err(|e| NodeError::Decode {
                pod: node.pod.clone(),
                message: e.to_string(),
            })
        })
    }
}

/// Through `/api/v1/namespaces/{ns}/pods/{pod}:7070/proxy/...` with the operator's kube client.
pub struct ProxyNodes {
    client: Client,
}

impl ProxyNodes {
    pub fn new(client: Client) -> Self {
        ProxyNodes { client }
    }

    /// The pod proxy path; `https:` makes the API server speak HTTPS to the node.
    fn url(node: &NodeTarget, path: &str) -> String {
        let scheme = if node.tls.is_some() { "https:" } else { "" };
        format!(
            "/api/v1/namespaces/{}/pods/{scheme}{}:{PORT}/proxy{path}",
            node.namespace, node.pod
        )
    }

    fn map_err(pod: &str, e: kube::Error) -> NodeError {
        match e {
            kube::Error::Api(status) => NodeError::Status {
                pod: pod.to_string(),
                status: status.code,
                body: status.message,
            },
            other => transport(pod, other),
        }
    }
}

impl NodeApi for ProxyNodes {
    fn push_ring<'a>(
        &'a self,
        node: &'a NodeTarget,
        ring: &'a RingDoc,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            let req = http::Request::put(Self::url(node, RING_PATH))
                .header(TOKEN_HEADER, token)
                .header("content-type", "application/json")
                .body(ring.to_json_pretty().into_bytes())
                .map_err(|e| transport(&node.pod, e))?;
            self.client
                .request_text(req)
                .await
                .map(|_| ())
                .map_err(|e| Self::map_err(&node.pod, e))
        })
    }

    fn migration<'a>(
        &'a self,
        node: &'a NodeTarget,
        token: &'a str,
    ) -> BoxFuture<'a, Result<MigrationReport, NodeError>> {
        Box::pin(async move {
            let req = http::Request::get(Self::url(node, MIGRATION_PATH))
                .header(TOKEN_HEADER, token)
                .body(Vec::new())
                .map_err(|e| transport(&node.pod, e))?;
            let text = self
                .client
                .request_text(req)
                .await
                .map_err(|e| Self::map_err(&node.pod, e))?;
            serde_json::from_str(&text).map_err(|e| NodeError::Decode {
                pod: node.pod.clone(),
                message: e.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, put};

    /// A stand-in node on 127.0.0.1 that checks the bearer token like the real one.
    async fn node(ring_status: StatusCode) -> String {
        fn authorized(h: &HeaderMap) -> bool {
            h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer tok")
        }
        let app = Router::new()
            .route(
                RING_PATH,
                put(move |h: HeaderMap, body: String| async move {
                    if !authorized(&h) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    if RingDoc::from_json(body.as_bytes()).is_err() {
                        return StatusCode::BAD_REQUEST;
                    }
                    ring_status
                }),
            )
            .route(
                MIGRATION_PATH,
                get(|h: HeaderMap| async move {
                    if !authorized(&h) {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    (
                        StatusCode::OK,
                        r#"{"epoch":4,"partitionsTotal":2,"partitionsDone":1,"keys":9,"bytes":90,"done":false,"error":null}"#.to_string(),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn target(addr: String) -> NodeTarget {
        NodeTarget {
            namespace: "cache".into(),
            pod: "demo-0".into(),
            addr,
            tls: None,
        }
    }

    #[tokio::test]
    async fn pushes_ring_with_the_bearer_token() {
        let t = target(node(StatusCode::NO_CONTENT).await);
        let nodes = DirectNodes::new().unwrap();
        let ring = RingDoc::single_node("demo-0", &t.addr, 8);
        nodes.push_ring(&t, &ring, "tok").await.unwrap();
        let err = nodes.push_ring(&t, &ring, "wrong").await.unwrap_err();
        assert!(
            matches!(err, NodeError::Status { status: 401, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn conflict_means_the_node_is_ahead() {
        let t = target(node(StatusCode::CONFLICT).await);
        let nodes = DirectNodes::new().unwrap();
        let ring = RingDoc::single_node("demo-0", &t.addr, 8);
        assert!(
            nodes
                .push_ring(&t, &ring, "tok")
                .await
                .unwrap_err()
                .is_conflict()
        );
    }

    #[tokio::test]
    async fn reads_migration_progress() {
        let t = target(node(StatusCode::NO_CONTENT).await);
        let report = DirectNodes::new()
            .unwrap()
            .migration(&t, "tok")
            .await
            .unwrap();
        assert_eq!(report.epoch, 4);
        assert_eq!((report.partitions_done, report.partitions_total), (1, 2));
        assert!(!report.done);
    }

    #[tokio::test]
    async fn proxy_mode_goes_through_the_pod_proxy_with_the_token_header() {
        use http_body_util::BodyExt;
        use kube::client::Body;
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::PUT);
            assert_eq!(
                req.uri().path(),
                "/api/v1/namespaces/cache/pods/demo-0:7070/proxy/internal/v1/ring"
            );
            assert_eq!(req.headers()[TOKEN_HEADER], "tok");
            assert!(req.headers().get("authorization").is_none());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(RingDoc::from_json(&body).unwrap().epoch, 0);
            send.send_response(
                http::Response::builder()
                    .status(204)
                    .body(Body::empty())
                    .unwrap(),
            );

            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                req.uri().path(),
                "/api/v1/namespaces/cache/pods/demo-0:7070/proxy/internal/v1/migration"
            );
            let report = br#"{"epoch":2,"done":true,"error":null}"#.to_vec();
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(Body::from(report))
                    .unwrap(),
            );
        });
        let nodes = ProxyNodes::new(Client::new(service, "cache"));
        let t = target("10.0.0.1:7070".into());
        let ring = RingDoc::single_node("demo-0", &t.addr, 8);
        nodes.push_ring(&t, &ring, "tok").await.unwrap();
        let report = nodes.migration(&t, "tok").await.unwrap();
        assert!(report.done_for(2));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error() {
        // Bind then drop to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = target(format!("127.0.0.1:{port}"));
        let err = DirectNodes::new()
            .unwrap()
            .migration(&t, "tok")
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::Transport { .. }), "{err}");
    }
}
