//! Serde helpers for binary fields of the internal JSON messages (`/internal/v1/op` requests
//! and answers): bytes as standard base64 strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(b))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let s = <&str>::deserialize(d)?;
    STANDARD
        .decode(s)
        .map(Bytes::from)
        .map_err(D::Error::custom)
}

/// `Option<Bytes>`: `null` or base64.
pub mod opt {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "crate::serde_b64")] Bytes);
        Ok(Option::<W>::deserialize(d)?.map(|W(b)| b))
    }
}

/// `Vec<Bytes>`: an array of base64 strings.
pub mod list {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "crate::serde_b64")] Bytes);

    pub fn serialize<S: Serializer>(v: &[Bytes], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| W(b.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Bytes>, D::Error> {
        Ok(Vec::<W>::deserialize(d)?
            .into_iter()
            .map(|W(b)| b)
            .collect())
    }
}
