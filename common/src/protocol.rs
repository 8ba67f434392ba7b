//! The names on the wire between nodes, the operator and clients: headers, content types and the
//! `code` of error bodies (`{"error": "...", "code": "..."}`), defined once.

/// Every response (and every node-to-node request) states the sender's ring epoch; a receiver
/// that sees a newer one fetches that ring.
pub const EPOCH_HEADER: &str = "x-ringcache-epoch";
/// `ip:port` of the node sending a request, so a receiver learning a newer epoch knows whom to ask.
pub const ORIGIN_HEADER: &str = "x-ringcache-origin";
/// Set on a request a node forwarded: the receiver must not forward it again.
pub const FORWARDED_HEADER: &str = "x-ringcache-forwarded";
/// The internal token, accepted like `Authorization: Bearer` (the API server's pod proxy strips
/// `Authorization`).
pub const INTERNAL_TOKEN_HEADER: &str = "x-ringcache-internal-token";

/// A record stream: replica writes, partition pulls.
pub const RECORDS_CONTENT_TYPE: &str = "application/x-ringcache-records";
/// The keys of a coalesced multi-get.
pub const KEYS_CONTENT_TYPE: &str = "application/x-ringcache-keys";
/// The answers of a coalesced multi-get.
pub const RESULTS_CONTENT_TYPE: &str = "application/x-ringcache-results";

macro_rules! error_codes {
    ($($variant:ident = $text:literal: $doc:literal,)*) => {
        /// The `code` of an error body. Unknown codes from a newer peer are read as
        /// [`ErrorCode::OwnerError`] when relayed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $($text => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    BadBatch = "bad_batch": "The batch request is not valid JSON of the documented shape.",
    BadBody = "bad_body": "The request body could not be read.",
    BadCursor = "bad_cursor": "A partition stream's `after` cursor is not hex.",
    BadKey = "bad_key": "A key is empty, longer than 250 bytes, or not UTF-8 in a path.",
    BadKeys = "bad_keys": "A multi-get body does not decode.",
    BadStream = "bad_stream": "A record stream does not decode.",
    BadTtl = "bad_ttl": "A TTL is not a duration, zero, or longer than 10 years.",
    BadValue = "bad_value": "A batch value is not valid base64.",
    CommandError = "command_error": "A Redis command refused by the key's owner (syntax, range, type of an argument); the message is Redis's.",
    CorruptValue = "corrupt_value": "A stored collection does not decode: a bug or a corrupt peer, never the request's fault.",
    Busy = "busy": "The node's buffer memory is taken; retry shortly.",
    EpochConflict = "epoch_conflict": "A ring with this node's epoch but other content.",
    Forbidden = "forbidden": "The internal API is closed (no internal token configured).",
    FutureVersion = "future_version": "A record's version is more than an hour ahead of this node's clock.",
    Incomplete = "incomplete": "A partition pull from a node that does not hold the partition completely.",
    InsufficientStorage = "insufficient_storage": "The value does not fit in maxMemory (eviction none, or larger than the bound).",
    InvalidRing = "invalid_ring": "A ring document does not parse or validate.",
    NotFound = "not_found": "No such key, partition or route.",
    NotInteger = "not_integer": "An increment of a value that is not a 64-bit integer.",
    NotReady = "not_ready": "The node has not finished recovering.",
    OlderEpoch = "older_epoch": "A ring older than the one this node serves with.",
    Overflow = "overflow": "An increment or decrement would overflow a 64-bit integer.",
    OwnerError = "owner_error": "The owner a request was forwarded to refused it with a code this node does not know.",
    ReplicationFailed = "replication_failed": "Too few owners acknowledged a write for its writeConsistency.",
    Unauthorized = "unauthorized": "A bearer token is missing or wrong.",
    Unavailable = "unavailable": "No owner can serve the request now (no ring yet, owners down or recovering).",
    ValueTooLarge = "value_too_large": "A value is larger than maxValueSize.",
    WrongType = "wrong_type": "The key holds another kind of value (a hash, set, sorted set or list where a string is read, or the reverse).",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn codes_serialize_as_their_strings() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::ValueTooLarge).unwrap(),
            "\"value_too_large\""
        );
    }
}
