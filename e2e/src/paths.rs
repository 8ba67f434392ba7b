//! API-server proxy paths to a ringcache node. Keys are percent-encoded here so that any key a user
//! can store (1..=250 bytes of UTF-8) survives the trip through the proxy.

/// Port name of the node's HTTP port on the client Service and in the pod spec.
pub const HTTP_PORT_NAME: &str = "http";
/// The node's HTTP port number (DESIGN.md).
pub const HTTP_PORT: u16 = 7070;

/// The proxy's scheme prefix: `https:` makes the API server reach the node over TLS (a cluster
/// with `spec.tls`; the proxy does not verify the node's certificate).
fn scheme(https: bool) -> &'static str {
    if https { "https:" } else { "" }
}

/// `/api/v1/namespaces/NS/services/[https:]NAME:http/proxy` + `rest` (which starts with `/`).
pub fn service_proxy(ns: &str, service: &str, https: bool, rest: &str) -> String {
    let s = scheme(https);
    format!("/api/v1/namespaces/{ns}/services/{s}{service}:{HTTP_PORT_NAME}/proxy{rest}")
}

/// `/api/v1/namespaces/NS/pods/[https:]POD:7070/proxy` + `rest`.
pub fn pod_proxy(ns: &str, pod: &str, https: bool, rest: &str) -> String {
    let s = scheme(https);
    format!("/api/v1/namespaces/{ns}/pods/{s}{pod}:{HTTP_PORT}/proxy{rest}")
}

/// `/v1/keys/{key}` with the key percent-encoded (unreserved characters stay as they are).
pub fn key_path(key: &str) -> String {
    let mut out = String::from("/v1/keys/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_proxy_names_the_http_port() {
        assert_eq!(
            service_proxy("ns1", "demo", false, "/v1/keys/a"),
            "/api/v1/namespaces/ns1/services/demo:http/proxy/v1/keys/a"
        );
        assert_eq!(
            service_proxy("ns1", "demo", true, "/v1/keys/a"),
            "/api/v1/namespaces/ns1/services/https:demo:http/proxy/v1/keys/a"
        );
    }

    #[test]
    fn pod_proxy_uses_the_port_number() {
        assert_eq!(
            pod_proxy("ns1", "demo-0", false, "/readyz"),
            "/api/v1/namespaces/ns1/pods/demo-0:7070/proxy/readyz"
        );
        assert_eq!(
            pod_proxy("ns1", "demo-0", true, "/readyz"),
            "/api/v1/namespaces/ns1/pods/https:demo-0:7070/proxy/readyz"
        );
    }

    #[test]
    fn key_path_percent_encodes_reserved_and_non_ascii_bytes() {
        assert_eq!(key_path("user-1_a.b~c"), "/v1/keys/user-1_a.b~c");
        assert_eq!(key_path("a/b c?d"), "/v1/keys/a%2Fb%20c%3Fd");
        assert_eq!(key_path("é"), "/v1/keys/%C3%A9");
    }
}
