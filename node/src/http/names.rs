//! The node protocol's header names, parsed once: a lookup by `&str` parses and validates the
//! name on every request.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ringcache_common::protocol::{EPOCH_HEADER, FORWARDED_HEADER, ORIGIN_HEADER};

pub static EPOCH: HeaderName = HeaderName::from_static(EPOCH_HEADER);
pub static ORIGIN: HeaderName = HeaderName::from_static(ORIGIN_HEADER);
pub static FORWARDED: HeaderName = HeaderName::from_static(FORWARDED_HEADER);

/// Requests with at most this many header values are searched in order instead of by hash.
const SCAN_UP_TO: usize = 8;

/// The first value of `name` in `h`. Most requests carry two or three headers, and hashing
/// the name cost more than comparing it with each of them (the benchmark profile showed the
/// hashing on every request).
pub fn get<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if h.len() <= SCAN_UP_TO {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    } else {
        h.get(name)
    }
}

/// Whether `h` has a value of `name` (see [`get`]).
pub fn has(h: &HeaderMap, name: &HeaderName) -> bool {
    get(h, name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanning_and_hashing_find_the_same_first_value() {
        for n in [0usize, 1, 3, SCAN_UP_TO, SCAN_UP_TO + 1, 20] {
            let mut h = HeaderMap::new();
            for i in 0..n {
                h.append(
                    HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                    HeaderValue::from(i),
                );
            }
            assert_eq!(get(&h, &EPOCH), None, "{n}");
            if n > 0 {
                h.append(EPOCH.clone(), HeaderValue::from_static("first"));
                h.append(EPOCH.clone(), HeaderValue::from_static("second"));
                assert_eq!(get(&h, &EPOCH), h.get(&EPOCH), "{n}");
                assert_eq!(get(&h, &EPOCH).unwrap(), "first");
                assert!(has(&h, &EPOCH) && !has(&h, &FORWARDED));
            }
        }
    }
}
