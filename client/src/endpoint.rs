//! URLs of nodes and of their API routes. Pure string work, tested without a network.

use crate::Error;
use reqwest::Url;
use std::time::Duration;

/// Parses a seed: an `http://` or `https://` URL, or a bare `host:port` (taken as `http://`).
/// A path is kept as a prefix, so a seed may point through a proxy (`http://127.0.0.1:8001/api/…/proxy`).
pub fn parse_seed(seed: &str) -> Result<Url, Error> {
    let seed = seed.trim();
    let with_scheme = if seed.contains("://") {
        seed.to_string()
    } else {
        format!("http://{seed}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| Error::InvalidUrl {
        url: seed.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidUrl {
            url: seed.to_string(),
            reason: format!("scheme {:?} is not http or https", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::InvalidUrl {
            url: seed.to_string(),
            reason: "no host".to_string(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidUrl {
            url: seed.to_string(),
            reason: "a node URL takes no query or fragment".to_string(),
        });
    }
    Ok(url)
}

/// Base URL of a ring member (`ip:port` from the ring document); `scheme` is the seeds' (a
/// cluster serving TLS serves it on every node).
pub fn member_url(scheme: &str, addr: &str) -> Option<Url> {
    if addr.is_empty() {
        return None;
    }
    Url::parse(&format!("{scheme}://{addr}")).ok()
}

/// The name to verify every node's certificate against when nodes are dialled by address: the
/// first seed's host when it is a DNS name (the cluster's certificate carries its Service
/// names), none when seeds are IPs (then each address dialled is verified).
pub fn tls_name_from_seeds(seeds: &[Url]) -> Option<String> {
    let host = seeds.first()?.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_err()
        .then(|| host.to_string())
}

/// `base` + path segments, each percent-encoded, keeping any path prefix of `base`.
pub fn route(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `path_segments_mut` only fails for cannot-be-a-base URLs, which `parse_seed` and
    // `member_url` never produce (both are http URLs with a host).
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `/v1/keys/{key}`, with `?ttl=` when given.
pub fn key_url(base: &Url, key: &str, ttl: Option<Duration>) -> Url {
    let mut url = route(base, &["v1", "keys", key]);
    if let Some(ttl) = ttl {
        url.set_query(Some(&format!("ttl={}", format_ttl(ttl))));
    }
    url
}

/// Whole seconds as `30s` (the form DESIGN.md shows); anything finer in milliseconds, rounded up
/// so that a sub-millisecond TTL never turns into "no expiry".
pub fn format_ttl(ttl: Duration) -> String {
    if ttl.subsec_nanos() == 0 {
        format!("{}s", ttl.as_secs())
    } else {
        format!("{}ms", ttl.as_nanos().div_ceil(1_000_000))
    }
}

/// The URL a human reads in messages: no trailing slash for a bare host.
pub fn display(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_accept_urls_and_bare_host_port() {
        assert_eq!(
            parse_seed("127.0.0.1:7070").map(|u| u.to_string()).ok(),
            Some("http://127.0.0.1:7070/".to_string())
        );
        assert_eq!(
            parse_seed(" http://cache.ns.svc:7070 ")
                .map(|u| u.to_string())
                .ok(),
            Some("http://cache.ns.svc:7070/".to_string())
        );
        assert!(matches!(
            parse_seed("ftp://x"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_seed("http://"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_seed("http://x/?a=1"),
            Err(Error::InvalidUrl { .. })
        ));
    }

    #[test]
    fn key_urls_are_percent_encoded_and_keep_a_prefix() {
        let base = parse_seed("http://127.0.0.1:8001/api/v1/proxy/").expect("valid");
        let url = key_url(&base, "user/42 é?#", None);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8001/api/v1/proxy/v1/keys/user%2F42%20%C3%A9%3F%23"
        );
        let plain = parse_seed("10.0.0.1:7070").expect("valid");
        assert_eq!(
            key_url(&plain, "k", Some(Duration::from_secs(30))).as_str(),
            "http://10.0.0.1:7070/v1/keys/k?ttl=30s"
        );
        assert_eq!(
            route(&plain, &["v1", "ring"]).as_str(),
            "http://10.0.0.1:7070/v1/ring"
        );
    }

    #[test]
    fn ttl_uses_seconds_when_whole_else_milliseconds_rounded_up() {
        assert_eq!(format_ttl(Duration::from_secs(90)), "90s");
        assert_eq!(format_ttl(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_ttl(Duration::from_nanos(1)), "1ms");
    }

    #[test]
    fn member_urls_come_from_ring_addresses() {
        assert_eq!(
            member_url("http", "10.244.1.7:7070").map(|u| display(&u)),
            Some("http://10.244.1.7:7070".to_string())
        );
        assert_eq!(
            member_url("https", "10.244.1.7:7070").map(|u| display(&u)),
            Some("https://10.244.1.7:7070".to_string())
        );
        assert_eq!(member_url("http", ""), None);
    }

    #[test]
    fn tls_name_is_the_first_seeds_dns_name() {
        let seeds = |s: &[&str]| s.iter().map(|s| parse_seed(s).unwrap()).collect::<Vec<_>>();
        assert_eq!(
            tls_name_from_seeds(&seeds(&[
                "https://cache.prod.svc:7070",
                "https://10.0.0.1:7070"
            ])),
            Some("cache.prod.svc".to_string())
        );
        assert_eq!(
            tls_name_from_seeds(&seeds(&["https://10.0.0.1:7070"])),
            None
        );
        assert_eq!(tls_name_from_seeds(&seeds(&["https://[::1]:7070"])), None);
        assert_eq!(tls_name_from_seeds(&[]), None);
    }
}
