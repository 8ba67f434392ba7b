//! What every ringcache part must agree on, in one place: the TLS client configuration nodes,
//! operator and client use to reach nodes ([`tls`]).

#[cfg(feature = "pki")]
pub mod pki;
pub mod tls;
