//! What every ringcache part must agree on, in one place: the TLS client configuration nodes,
//! operator and client use to reach nodes ([`tls`]), and the size and duration syntax of flags
//! and specs ([`quantity`]).

#[cfg(feature = "pki")]
pub mod pki;
pub mod quantity;
pub mod tls;
