//! The type of a stored value. Strings are stored as they are; collections (hash, set, sorted
//! set, list) in their compact encoding ([`crate::engine::value`]), so an entry of any type is
//! one block, one record on the wire and one frame in a snapshot.

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
pub enum Kind {
    #[default]
    String = 0,
    Hash = 1,
    Set = 2,
    ZSet = 3,
    List = 4,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::String, Kind::Hash, Kind::Set, Kind::ZSet, Kind::List];

    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(b)).copied()
    }

    /// The name `TYPE` answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }

    /// The kind whose `TYPE` name is `name` (ASCII case-insensitive), as `SCAN … TYPE` takes it.
    pub fn named(name: &[u8]) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A key read or changed as one kind holds another (Redis's `-WRONGTYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Operation against a key holding the wrong kind of value")]
pub struct WrongKind(pub Kind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_byte_and_its_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_u8(k as u8), Some(k));
            assert_eq!(Kind::named(k.name().to_uppercase().as_bytes()), Some(k));
        }
        assert_eq!(Kind::from_u8(5), None);
        assert_eq!(Kind::named(b"stream"), None);
    }
}
