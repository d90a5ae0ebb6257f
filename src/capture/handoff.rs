//! The hand-off from streaming threads to the inference worker: a bounded channel whose
//! sender never blocks. When it is full the oldest pending window is dropped (the newest
//! one matters most for a live label) and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::window::Window;

/// The receiving side is gone (the daemon is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Sending side, cloned into every stream.
#[derive(Debug, Clone)]
pub struct WindowSender {
    tx: Sender<Window>,
    /// A receiver used only to drop the oldest window when the queue is full.
    oldest: Receiver<Window>,
    dropped: Arc<AtomicU64>,
}

/// A bounded window queue: (sender for the streams, receiver for the worker).
pub fn window_queue(capacity: usize) -> (WindowSender, Receiver<Window>) {
    let (tx, rx) = bounded(capacity.max(1));
    (
        WindowSender {
            tx,
            oldest: rx.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

impl WindowSender {
    /// Queue a window without blocking; returns how many older windows were dropped to
    /// make room (0 or 1), or `Err` when the receiver is gone.
    pub fn send(&self, window: Window) -> Result<u64, Disconnected> {
        let mut window = window;
        let mut dropped = 0;
        loop {
            match self.tx.try_send(window) {
                Ok(()) => return Ok(dropped),
                Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                Err(TrySendError::Full(w)) => {
                    window = w;
                    if self.oldest.try_recv().is_ok() {
                        dropped += 1;
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Windows dropped because the queue was full, over all streams.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Windows the queue holds.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(0)
    }

    /// Windows waiting.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}
