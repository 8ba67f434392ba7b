//! What can go wrong talking to a ringcache cluster.

use std::fmt;

/// One failed try against one node, kept so that "nothing answered" says what each node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Base URL of the node tried.
    pub node: String,
    /// What happened: a connection error, a timeout or a 5xx status with the node's message.
    pub error: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, self.error)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rejected before any request: keys are 1..=250 bytes.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// A seed is not an absolute http(s) URL.
    #[error("invalid node URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("no seed URL given")]
    NoSeeds,

    /// The CA or server name given for TLS is unusable.
    #[error("TLS settings: {0}")]
    Tls(String),

    /// The HTTP client could not be built (bad TLS/proxy settings in the environment, …).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// A node answered with a definitive error (4xx, or a 5xx that retrying elsewhere cannot fix,
    /// such as 507 "memory full"). `code` and `message` are the node's JSON `{"code","error"}`.
    #[error("node {node} answered {status}{}: {message}", code_suffix(.code))]
    Server {
        node: String,
        status: u16,
        code: String,
        message: String,
    },

    /// Every candidate node failed with a connection error, a timeout or a retryable 5xx.
    #[error("{op}: no node could serve the request (tried {}): {}", .attempts.len(), join(.attempts))]
    Unavailable {
        op: &'static str,
        attempts: Vec<Attempt>,
    },
}

impl Error {
    /// HTTP status of a definitive server answer, if that is what this error is.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    }
}

fn join(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no candidate node".to_string();
    }
    attempts
        .iter()
        .map(Attempt::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_message_carries_status_code_and_text() {
        let e = Error::Server {
            node: "http://10.0.0.1:7070".into(),
            status: 413,
            code: "value_too_large".into(),
            message: "value is 2000000 bytes, max 1048576".into(),
        };
        assert_eq!(
            e.to_string(),
            "node http://10.0.0.1:7070 answered 413 (value_too_large): value is 2000000 bytes, max 1048576"
        );
        assert_eq!(e.status(), Some(413));
    }

    #[test]
    fn unavailable_lists_every_attempt() {
        let e = Error::Unavailable {
            op: "get",
            attempts: vec![
                Attempt {
                    node: "http://a".into(),
                    error: "connection refused".into(),
                },
                Attempt {
                    node: "http://b".into(),
                    error: "503 (no_owner): no live owner".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "get: no node could serve the request (tried 2): http://a: connection refused; \
             http://b: 503 (no_owner): no live owner"
        );
        assert_eq!(e.status(), None);
    }
}
