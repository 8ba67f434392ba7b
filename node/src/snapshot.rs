//! Snapshots for `--data-dir`: every partition's records (tombstones included) in one file,
//! written to a temp file, fsynced, then renamed over the previous snapshot, so a crash leaves
//! either the old or the new snapshot, never half of one.
//!
//! File: `RCSNAP01` | u64 payload length | u64 xxh3_64(payload) | payload (a [`crate::wire`]
//! record stream with its trailer). Anything that does not check out is refused whole.

use crate::engine::{Engine, Record};
use crate::wire;
use bytes::BytesMut;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"RCSNAP01";
pub const FILE_NAME: &str = "snapshot.bin";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Serializes every partition of `engine` (bounded batches per partition).
pub fn encode(engine: &Engine, now_ms: u64) -> Vec<u8> {
    let mut payload = BytesMut::new();
    let mut count = 0u64;
    for p in 0..engine.partitions() {
        let mut cursor: Option<bytes::Bytes> = None;
        loop {
            let batch = engine
                .scan_partition(p, cursor.as_deref(), 4096, now_ms)
                .unwrap_or_default();
            for r in &batch {
                wire::encode_record(&mut payload, r);
            }
            count += batch.len() as u64;
            match batch.last() {
                Some(last) if batch.len() == 4096 => cursor = Some(last.key.clone()),
                _ => break,
            }
        }
    }
    wire::encode_trailer(&mut payload, count);
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses and verifies a snapshot file's bytes.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<Record>, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(corrupt("bad header".into()));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(n) as usize;
    n.copy_from_slice(&bytes[16..24]);
    let sum = u64::from_le_bytes(n);
    let payload = &bytes[24..];
    if payload.len() != len {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        )));
    }
    if xxh3_64(payload) != sum {
        return Err(corrupt("checksum mismatch".into()));
    }
    wire::decode_all(payload, wire::MAX_FRAME).map_err(|e| corrupt(e.to_string()))
}

/// Writes the snapshot atomically (temp file + fsync + rename + directory fsync).
pub fn write(dir: &Path, data: &[u8]) -> Result<(), SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let fin = path_in(dir);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads the snapshot in `dir`: `Ok(None)` when there is none.
pub fn read(dir: &Path) -> Result<Option<Vec<Record>>, SnapshotError> {
    let path = path_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, EvictionPolicy};
    use bytes::Bytes;

    fn engine() -> Engine {
        let e = Engine::new(EngineConfig::new(16, 1 << 24, EvictionPolicy::Lru));
        for i in 0..5000u32 {
            e.set(
                format!("k{i}").as_bytes(),
                Bytes::from(format!("v{i}")),
                None,
                1_000,
            )
            .unwrap();
        }
        e.delete(b"k7", 1_000).unwrap();
        e
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rc-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn roundtrip_restores_values_versions_and_tombstones() {
        let dir = tmpdir("rt");
        let e = engine();
        write(&dir, &encode(&e, 1_000)).unwrap();
        let recs = read(&dir).unwrap().unwrap();
        assert_eq!(recs.len(), 5000);
        let e2 = Engine::new(EngineConfig::new(16, 1 << 24, EvictionPolicy::Lru));
        for r in &recs {
            e2.apply(r, 1_000).unwrap();
        }
        assert_eq!(e2.get(b"k42", 1_000), Some(Bytes::from_static(b"v42")));
        assert!(e2.get_record(b"k7", 1_000).unwrap().is_tombstone());
        assert_eq!(e2.get_record(b"k1", 1_000), e.get_record(b"k1", 1_000));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_snapshot_is_none() {
        assert!(read(&tmpdir("none")).unwrap().is_none());
    }

    #[test]
    fn flipped_byte_and_truncation_are_detected() {
        let data = encode(&engine(), 1_000);
        let p = Path::new("x");
        let mut flipped = data.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        assert!(matches!(
            decode(p, &flipped),
            Err(SnapshotError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(p, &data[..data.len() - 1]),
            Err(SnapshotError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(p, &data[..10]),
            Err(SnapshotError::Corrupt { .. })
        ));
        assert!(decode(p, &data).is_ok());
    }
}
