//! A command's answer as a tree, independent of the protocol version: it is made on the key's
//! owner, may travel back to the node the client is connected to (as JSON), and is written there
//! in RESP2 or RESP3.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Frame {
    Ok,
    /// A status reply (`+string`), as `TYPE` answers.
    Simple(String),
    /// A null bulk string (RESP3: null).
    Nil,
    /// A null array (RESP3: null), as `LPOP key count` answers an absent key.
    NilArray,
    Int(i64),
    Bulk(#[serde(with = "crate::serde_b64")] Bytes),
    /// RESP3 double; a bulk string in RESP2 (Redis's formatting, [`format_double`]).
    Double(#[serde(with = "double_text")] f64),
    Array(Vec<Frame>),
    /// RESP3 map; a flat array of key, value, … in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 set; an array in RESP2.
    Set(Vec<Frame>),
    /// Two-element arrays in RESP3 (`ZRANGE … WITHSCORES`), one flat array in RESP2.
    Pairs(Vec<(Frame, Frame)>),
}

impl Frame {
    pub fn bulk(b: &[u8]) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(b))
    }

    pub fn bulks<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Frame {
        Frame::Array(items.into_iter().map(Frame::bulk).collect())
    }

    pub fn bool(b: bool) -> Frame {
        Frame::Int(i64::from(b))
    }
}

/// A double as Redis writes it in a bulk string: the shortest form that reads back as the same
/// number, `inf`/`-inf`, integers without a fraction, exponent form for very large or small.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let a = d.abs();
    if (1e-5..1e17).contains(&a) {
        format!("{d}")
    } else {
        let s = format!("{d:e}");
        // Rust writes `1e300`; Redis (and C's printf) `1e+300`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    }
}

/// Doubles travel as their text: JSON has no infinity.
mod double_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_double(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = <&str>::deserialize(d)?;
        super::parse_double(s.as_bytes()).ok_or_else(|| D::Error::custom("not a double"))
    }
}

/// A double as Redis reads one from an argument: a decimal or exponent form, `inf`, `+inf`,
/// `-inf` (any case); never NaN, no spaces.
pub fn parse_double(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let d = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        // Rust's parser takes "infinity"/"nan" spellings handled above or refused below.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            return None;
        }
        _ => s.parse().ok()?,
    };
    (!d.is_nan()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_back_and_look_like_redis() {
        for (d, s) in [
            (1.5, "1.5"),
            (10.6, "10.6"),
            (3.0, "3"),
            (-2.25, "-2.25"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1e300, "1e+300"),
            (1.5e-7, "1.5e-7"),
        ] {
            assert_eq!(format_double(d), s);
            if d.is_finite() {
                assert_eq!(s.parse::<f64>().unwrap(), d);
            }
        }
    }

    #[test]
    fn frames_survive_json() {
        let f = Frame::Array(vec![
            Frame::Ok,
            Frame::Nil,
            Frame::NilArray,
            Frame::Int(-3),
            Frame::bulk(b"\x00\xff"),
            Frame::Double(0.5),
            Frame::Map(vec![(Frame::bulk(b"f"), Frame::Double(f64::INFINITY))]),
            Frame::Set(vec![Frame::bulk(b"m")]),
        ]);
        let back: Frame = serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
