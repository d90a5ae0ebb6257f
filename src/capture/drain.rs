//! Taking a stream's windows until it is done with: the one loop that `capture`,
//! decoding a recording for training, and `record` share.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::handoff::{RecvTimeoutError, WindowReceiver};
use super::stream::{StreamHandle, StreamState};
use crate::window::Window;

/// When to stop taking windows, besides the stream ending.
#[derive(Debug, Clone, Copy, Default)]
pub struct Until<'a> {
    /// Ctrl-C or the like.
    pub stop: Option<&'a AtomicBool>,
    pub deadline: Option<Instant>,
    /// Give up at the first failure (a file decoded for training, a recording with nothing
    /// yet) rather than wait out the supervisor's restarts (a live capture).
    pub failure: bool,
    /// Give up when no window came for this long (a decoder that hangs).
    pub idle: Option<Duration>,
}

/// How the draining ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Drained {
    /// The source ended (a file without loop) and every window was taken.
    Ended,
    /// Stopped by the caller: enough windows, the stop flag or the deadline.
    Stopped,
    /// The source failed (with `Until::failure`); the reason as logged.
    Failed(String),
    /// No window for `Until::idle`.
    Idle(Duration),
}

impl StreamHandle {
    /// Hand each window of the stream to `each` until `each` breaks, `until` says so or
    /// the stream ends.
    pub fn drain(
        &self,
        windows: &WindowReceiver,
        until: Until<'_>,
        mut each: impl FnMut(Window) -> ControlFlow<()>,
    ) -> Drained {
        let mut last = Instant::now();
        loop {
            let stopped = until.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            if stopped || until.deadline.is_some_and(|d| Instant::now() >= d) {
                return Drained::Stopped;
            }
            match windows.recv_timeout(Duration::from_millis(50)) {
                Ok(window) => {
                    last = Instant::now();
                    if each(window).is_break() {
                        return Drained::Stopped;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Drained::Ended,
                Err(RecvTimeoutError::Timeout) => match self.stats.state() {
                    StreamState::Backoff { reason, .. } if until.failure => {
                        return Drained::Failed(reason);
                    }
                    StreamState::Ended if windows.is_empty() => return Drained::Ended,
                    _ => {
                        if let Some(idle) = until.idle.filter(|&idle| last.elapsed() > idle) {
                            return Drained::Idle(idle);
                        }
                    }
                },
            }
        }
    }
}
