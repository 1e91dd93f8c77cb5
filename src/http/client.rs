//! HTTP client builders and the loopback rule every HTTP client here follows.

use reqwest::Url;

/// A client builder for 127.0.0.1 (the manager): no proxy, no TLS roots.
pub fn loopback_client_builder() -> reqwest::ClientBuilder {
    without_tls_roots(client_builder().no_proxy())
}

/// A plain-http client never verifies a certificate, so it skips loading
/// the system's root store (milliseconds of the proxy's cold start).
pub fn without_tls_roots(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    #[cfg(feature = "tls")]
    let builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
    builder
}

/// A client builder with the TLS crypto provider in place (reqwest sets up
/// TLS for every client, even one that only talks to loopback).
pub fn client_builder() -> reqwest::ClientBuilder {
    #[cfg(feature = "tls")]
    {
        // Only the first call installs it; later calls find it there.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
}

/// True for `localhost`, `127.0.0.0/8` and `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The whole error chain on one line: "error sending request: connection refused".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:3100/mcp",
            "http://localhost:1/",
            "http://[::1]:2/",
            "http://127.8.0.1/",
        ] {
            assert!(is_loopback(&Url::parse(url).expect("url")), "{url}");
        }
        assert!(!is_loopback(
            &Url::parse("https://example.com/mcp").expect("url")
        ));
    }
}
