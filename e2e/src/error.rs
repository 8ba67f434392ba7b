use std::time::Duration;

/// Why an end-to-end scenario failed. A test returns this; the harness turns it into a panic
/// with the whole message.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("building a request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out after {after:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },
    /// One request that got no answer in time (the API server's or a node's).
    #[error("{what}: no answer within {after:?}")]
    NoAnswer { what: String, after: Duration },
    #[error("{method} {path} answered {status}: {body}")]
    Http {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Check(String),
}

impl E2eError {
    pub fn check(msg: impl Into<String>) -> Self {
        E2eError::Check(msg.into())
    }
}

/// Fails the scenario with `msg` unless `cond` holds.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), E2eError> {
    if cond {
        Ok(())
    } else {
        Err(E2eError::Check(msg()))
    }
}
