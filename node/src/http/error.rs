//! JSON error bodies: `{"error": "...", "code": "..."}` with the matching status. The one place
//! where the node's errors (engine, cluster) become HTTP statuses.

use crate::cluster::{ClusterError, OpError};
use crate::commands::CmdError;
use crate::engine::EngineError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ringcache_common::protocol::ErrorCode;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_key(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadKey, message)
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code.as_str() });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        use EngineError as E;
        match e {
            E::Full { .. } | E::TooLarge { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::InsufficientStorage,
                e.to_string(),
            ),
            E::NoSuchPartition(_) => ApiError::not_found(e.to_string()),
            E::FutureVersion { .. } => {
                ApiError::bad_request(ErrorCode::FutureVersion, e.to_string())
            }
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        use ClusterError as C;
        match e {
            C::Engine(e) => e.into(),
            C::Op(ref op) => {
                let (status, code) = match op {
                    OpError::WrongType | OpError::Command(CmdError::WrongType) => {
                        (StatusCode::CONFLICT, ErrorCode::WrongType)
                    }
                    OpError::Command(CmdError::Reply(_)) => {
                        (StatusCode::BAD_REQUEST, ErrorCode::CommandError)
                    }
                    OpError::Command(CmdError::Corrupt(_)) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::CorruptValue)
                    }
                    OpError::NotInteger => (StatusCode::BAD_REQUEST, ErrorCode::NotInteger),
                    OpError::Overflow => (StatusCode::BAD_REQUEST, ErrorCode::Overflow),
                    OpError::ValueTooLarge { .. } => {
                        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::ValueTooLarge)
                    }
                };
                ApiError::new(status, code, e.to_string())
            }
            C::Owner {
                status,
                code,
                message,
            } => ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                code,
                message,
            ),
            C::Replication { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ReplicationFailed,
                e.to_string(),
            ),
            C::NoRing
            | C::NoLiveOwner { .. }
            | C::NoServingOwner { .. }
            | C::NotOwner { .. }
            | C::Unreachable(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for ClusterError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Op;

    #[test]
    fn cluster_errors_map_to_statuses_and_codes() {
        let cases = [
            (ClusterError::NoRing, 503, ErrorCode::Unavailable),
            (
                ClusterError::NoLiveOwner { partition: 3 },
                503,
                ErrorCode::Unavailable,
            ),
            (
                ClusterError::NotOwner {
                    op: Op::Write,
                    partition: 3,
                    epoch: 9,
                },
                503,
                ErrorCode::Unavailable,
            ),
            (
                ClusterError::Replication {
                    acks: 0,
                    need: 1,
                    errors: "x".into(),
                },
                503,
                ErrorCode::ReplicationFailed,
            ),
            (
                ClusterError::from_owner(413, br#"{"error":"big","code":"value_too_large"}"#),
                413,
                ErrorCode::ValueTooLarge,
            ),
            (
                ClusterError::from_owner(401, br#"{"error":"no","code":"unauthorized"}"#),
                401,
                ErrorCode::Unauthorized,
            ),
            (
                ClusterError::Engine(EngineError::TooLarge { size: 10, max: 5 }),
                507,
                ErrorCode::InsufficientStorage,
            ),
        ];
        for (e, status, code) in cases {
            let what = e.to_string();
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{what}");
            assert_eq!(a.message, what);
        }
    }
}
