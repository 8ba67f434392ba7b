//! Numbered databases (`SELECT n`): the database is part of the key as every node stores,
//! replicates, migrates and snapshots it, so each database is its own keyspace across the
//! cluster with no new field anywhere. Database 0 keeps keys as they are (what HTTP and every
//! existing store holds); another database's key is `0xFF, n, key`. A database-0 key that itself
//! starts with `0xFF` is stored as `0xFF, 0, key`, so no two (database, key) pairs meet. HTTP keys
//! are UTF-8, which never starts with `0xFF`: HTTP addresses database 0 only.

/// The byte that marks a stored key carrying its database.
const MARK: u8 = 0xFF;

/// Bytes a key of a database other than 0 takes beyond its own.
pub const OVERHEAD: usize = 2;

/// The stored form of `key` in database `db`.
pub fn stored(db: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + OVERHEAD);
    if db != 0 || key.first() == Some(&MARK) {
        out.push(MARK);
        out.push(db);
    }
    out.extend_from_slice(key);
    out
}

/// Whether `key` is stored as it is in database `db` (no copy needed).
pub fn is_plain(db: u8, key: &[u8]) -> bool {
    db == 0 && key.first() != Some(&MARK)
}

/// The database and the client's key of a stored key.
pub fn split(stored: &[u8]) -> (u8, &[u8]) {
    match stored {
        [MARK, db, rest @ ..] => (*db, rest),
        _ => (0, stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn database_zero_keeps_keys_as_they_are() {
        assert_eq!(stored(0, b"user:1"), b"user:1");
        assert!(is_plain(0, b"user:1"));
        assert_eq!(stored(3, b"user:1"), b"\xff\x03user:1");
        assert_eq!(split(b"\xff\x03user:1"), (3, &b"user:1"[..]));
        assert_eq!(stored(0, b"\xff\x03x"), b"\xff\x00\xff\x03x");
        assert!(!is_plain(0, b"\xff"));
    }

    proptest! {
        #[test]
        fn no_two_databases_share_a_stored_key(
            a in (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..8)),
            b in (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..8)),
        ) {
            let (sa, sb) = (stored(a.0, &a.1), stored(b.0, &b.1));
            prop_assert_eq!(sa == sb, a == b);
            prop_assert_eq!(split(&sa), (a.0, &a.1[..]));
        }
    }
}
