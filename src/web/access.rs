//! Who may do what on the listener. Reading is open to whoever reaches it — which, by
//! default, is this machine only: a listener on a loopback address also refuses requests
//! whose `Host` is not a loopback name (a web page elsewhere cannot rebind its own name
//! to 127.0.0.1 and read the camera's frame). Writing (starting or stopping a
//! recording) needs a JSON body from the page's own origin — a cross-site form or
//! script is refused — and, when `metrics.token_file` is set (required off loopback),
//! the token as `Authorization: Bearer …`, compared in constant time.

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};

/// The rules of one listener.
#[derive(Clone)]
pub struct Access {
    listen: SocketAddr,
    token: Option<String>,
}

/// Why a request is refused: the status and a sentence for the body.
pub type Refusal = (StatusCode, String);

/// Equal bytes, in a time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut differ = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        differ |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    differ == 0
}

fn header<'a>(headers: &'a HeaderMap, name: impl header::AsHeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `host` (a `Host` header: name or address, with or without port) names
/// this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Access {
    pub fn new(listen: SocketAddr, token: Option<String>) -> Access {
        Access { listen, token }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Any request: on a loopback listener, only with a loopback `Host`.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.listen.ip().is_loopback() {
            return Ok(());
        }
        match header(headers, header::HOST) {
            Some(host) if !is_loopback_host(host) => Err((
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this avscene listens on {} and answers only to a loopback host name, not '{host}'",
                    self.listen
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A write (after [`Access::check_read`], which every request passes first): same
    /// origin, a JSON body, and the token when one is set.
    pub fn check_write(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let forbidden = |why: String| Err((StatusCode::FORBIDDEN, why));
        if let Some(origin) = header(headers, header::ORIGIN) {
            let host = header(headers, header::HOST).unwrap_or("");
            if origin != format!("http://{host}") {
                return forbidden(format!(
                    "a request from {origin} may not change anything here (only this page may)"
                ));
            }
        } else if header(headers, "sec-fetch-site").is_some_and(|site| site == "cross-site") {
            return forbidden("a cross-site request may not change anything here".into());
        }
        let json = header(headers, header::CONTENT_TYPE)
            .is_some_and(|t| t.split(';').next().unwrap_or("").trim() == "application/json");
        if !json {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = header(headers, header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if same(given.trim().as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "a token is needed to change anything here (Authorization: Bearer <the token in metrics.token_file>)".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_whole_strings() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abcdef", b"abcde"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
    }

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost:9464",
            "127.0.0.1:9464",
            "[::1]:9464",
            "127.0.0.1",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:9464",
            "192.168.1.5:9464",
            "[2001:db8::1]:80",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
