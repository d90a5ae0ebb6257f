//! The HTTP server (axum on a small tokio runtime of its own thread, so a slow client
//! never holds up a stage): the status page and its assets, the JSON API and its live
//! feed, `/metrics` and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::IntervalStream;

use super::access::Access;
use super::board::Board;
use super::page;
use crate::metrics::Telemetry;
use crate::record::{RecordAction, RecordRequest, RequestError};

/// How often the live feed (`/api/events`) sends the status.
const EVENTS_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct App {
    telemetry: Arc<Telemetry>,
    board: Arc<Board>,
    access: Access,
}

/// The running HTTP server; dropping it stops it.
pub struct WebServer {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Listen on `address`; an address in use is an error that names it.
    pub fn start(
        address: SocketAddr,
        telemetry: Arc<Telemetry>,
        board: Arc<Board>,
        access: Access,
    ) -> Result<WebServer, String> {
        let listener = std::net::TcpListener::bind(address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("metrics.listen {address}: cannot listen: {e}"))?;
        let address = listener.local_addr().unwrap_or(address);
        let app = App {
            telemetry,
            board,
            access,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || serve(listener, app, stopped))
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        tracing::info!("status page on http://{address}/ (metrics on /metrics, health on /health)");
        Ok(WebServer {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serve until `stopped`; open live feeds are cut rather than waited for.
fn serve(listener: std::net::TcpListener, app: App, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("http: cannot start the async runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("http: cannot listen: {e}");
                return;
            }
        };
        tokio::select! {
            result = axum::serve(listener, router(app)) => {
                if let Err(e) = result {
                    tracing::error!("http: {e}");
                }
            }
            _ = stopped => {}
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
}

fn router(app: App) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", page::INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", page::SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", page::STYLE) }),
        )
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/api/status", get(status))
        .route("/api/timeline", get(timeline))
        .route("/api/events", get(events))
        .route("/api/streams/{stream}/frame.png", get(frame))
        .route("/api/streams/{stream}/record", get(recording).post(record))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Every request: the access rules for reading, and headers that keep the page to
/// itself (no framing, no sniffing, nothing loaded from elsewhere).
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Err(refusal) = app.access.check_read(request.headers()) {
        return refusal.into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// An error as JSON: `{"error": "…"}`.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": reason.into() }))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "avscene serves / (the status page), /api/status, /api/timeline, /api/events, /api/streams/<name>/frame.png and …/record, /metrics and /health\n",
    )
        .into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.telemetry.render(),
    )
        .into_response()
}

async fn health(State(app): State<App>) -> Response {
    let health = app.telemetry.health();
    let status = if health.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &health)
}

async fn status(State(app): State<App>) -> Response {
    json(StatusCode::OK, &app.board.status())
}

async fn timeline(State(app): State<App>) -> Response {
    json(StatusCode::OK, &app.board.timelines())
}

/// The status every second as server-sent events (`event: status`), the first at once.
async fn events(State(app): State<App>) -> impl IntoResponse {
    let ticks = IntervalStream::new(tokio::time::interval(EVENTS_EVERY));
    let stream = ticks.map(move |_| {
        let data = serde_json::to_string(&app.board.status()).unwrap_or_default();
        Ok::<Event, std::convert::Infallible>(Event::default().event("status").data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The frame the model last saw for a stream, as PNG (224×224).
async fn frame(State(app): State<App>, Path(stream): Path<String>) -> Response {
    let Some(rgb) = app.board.frame(&stream) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no frame of stream '{stream}' yet"),
        );
    };
    match crate::capture::encode_png(&rgb) {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn recording(State(app): State<App>, Path(stream): Path<String>) -> Response {
    if !app.board.stream_names().contains(&stream) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no stream '{stream}' is running"),
        );
    }
    json(StatusCode::OK, &app.board.recorder().state(&stream))
}

/// Start or stop a recording: `{"label": "parcel", "minutes": 1}` or
/// `{"action": "stop"}`.
async fn record(
    State(app): State<App>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err((status, reason)) = app.access.check_write(&headers) {
        return error(status, reason);
    }
    let action = match RecordAction::from_json(&body) {
        Ok(action) => action,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let request = RecordRequest { stream, action };
    match app
        .board
        .recorder()
        .request(&request, &app.board.stream_names())
    {
        Ok(state) => json(StatusCode::OK, &state),
        Err(e @ RequestError::NoStream { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RequestError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ RequestError::Conflict(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}
