//! Sizes (Kubernetes quantity syntax) and durations (`30s`, `500ms`, `1h30m`): the parsers every
//! ringcache part shares, so the operator admits exactly what the node accepts and the client
//! sends what the node reads.

pub use ringcache_common::quantity::{
    QuantityError, parse_duration, parse_duration_ms, parse_size,
};
