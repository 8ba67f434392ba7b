//! The benchmark's ceiling: the cheapest axum handler, returning a fixed 100-byte body for every
//! `GET /v1/keys/{key}` and accepting every PUT. Same runtime and HTTP stack as the node.
//! Usage: `ceiling 127.0.0.1:7171`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;

static BODY: [u8; 100] = [b'x'; 100];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7171".into());
    let app = Router::new().route(
        "/v1/keys/{key}",
        get(|| async { Bytes::from_static(&BODY) })
            .put(|_b: Bytes| async { StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
