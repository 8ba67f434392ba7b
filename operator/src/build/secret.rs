use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Owner, TOKEN_KEY};

/// `NAME-internal` holding the token nodes use on `/internal/v1/*`. The caller creates it only
/// when it does not exist (never re-applied), so the token is never rotated by accident.
pub fn internal_secret(owner: &Owner, token: &str) -> Secret {
    Secret {
        metadata: owner.meta(owner.names.internal_secret()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// 32 random bytes, hex-encoded (64 characters).
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::cluster;

    #[test]
    fn secret_carries_the_given_token() {
        let owner = Owner::of(&cluster("demo", "{}")).unwrap();
        let s = internal_secret(&owner, "abc");
        assert_eq!(s.metadata.name.as_deref(), Some("demo-internal"));
        assert_eq!(s.data.unwrap()["token"].0, b"abc");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
