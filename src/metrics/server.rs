//! The HTTP endpoint of `/metrics` and `/health`, on its own thread: one request per
//! connection, answered from [`Telemetry`]; serving never blocks the stages.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Telemetry;

/// The HTTP server of `/metrics` and `/health`.
pub struct MetricsServer {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listen on `address`; an address in use is an error that names it.
    pub fn start(address: SocketAddr, telemetry: Arc<Telemetry>) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(address)
            .map_err(|e| format!("metrics.listen {address}: cannot listen: {e}"))?;
        let address = listener.local_addr().unwrap_or(address);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_t = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for connection in listener.incoming() {
                    if stop_t.load(Ordering::SeqCst) {
                        break;
                    }
                    match connection {
                        Ok(stream) => {
                            if let Err(e) = answer(stream, &telemetry) {
                                tracing::debug!("metrics: {e}");
                            }
                        }
                        Err(e) => tracing::debug!("metrics: accept: {e}"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        tracing::info!("metrics on http://{address}/metrics, health on http://{address}/health");
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answer one request (HTTP/1.1, one request per connection).
fn answer(mut stream: TcpStream, telemetry: &Telemetry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request);
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            telemetry.render(),
        ),
        ("GET" | "HEAD", "/health") => {
            let health = telemetry.health();
            let status = if health.ok() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let body = serde_json::to_string(&health).unwrap_or_default();
            (status, "application/json", format!("{body}\n"))
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "avscene serves /metrics and /health\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
