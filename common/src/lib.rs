//! What every ringcache part must agree on, in one place: the TLS client configuration nodes,
//! operator and client use to reach nodes ([`tls`]), the size and duration syntax of flags and
//! specs ([`quantity`]), and the header names, content types and error codes on the wire
//! ([`protocol`]).

#[cfg(feature = "pki")]
pub mod pki;
pub mod protocol;
pub mod quantity;
pub mod tls;
