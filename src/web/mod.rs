//! The daemon's HTTP listener (`[metrics] listen`, default 127.0.0.1:9464): the status
//! page at `/` — every stream's label, probabilities, timeline, the frame the model saw,
//! its state and counters, recording from the page — the JSON API behind it (`/api/…`,
//! documented in the README), and `/metrics` and `/health`. The page's assets are
//! compiled in (`page/`); it loads nothing from elsewhere.

mod access;
mod board;
mod server;

pub use access::Access;
pub use board::{Board, Sources, Status, StreamStatus, TIMELINE, Timelines};
pub use server::WebServer;

/// The page's files, compiled into the binary.
mod page {
    pub const INDEX: &str = include_str!("page/index.html");
    pub const SCRIPT: &str = include_str!("page/app.js");
    pub const STYLE: &str = include_str!("page/app.css");
}
