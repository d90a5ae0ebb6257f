//! The hand-off from streaming threads to the inference worker: a bounded queue whose
//! sender never blocks, fair between streams. Each stream has its own lane; the worker
//! takes from the lanes in turn, so a stream that produces windows faster than the model
//! runs (a file decoded as fast as it goes, a broken source in a burst) gets its share
//! and no more. When the queue is full the oldest window of the longest lane is dropped
//! — the flooding stream's own, never a steady stream's only one — and counted against
//! that stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use crossbeam_channel::RecvTimeoutError;

use crate::window::Window;

/// The receiving side is gone (the daemon is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// One stream's windows in the queue.
struct Lane {
    stream: Arc<str>,
    windows: VecDeque<Window>,
    /// Windows of this stream dropped to make room.
    dropped: Arc<AtomicU64>,
}

struct Lanes {
    lanes: Vec<Lane>,
    /// The lane the worker takes from next.
    turn: usize,
    len: usize,
}

/// Sees every window before it is queued (the daemon's recorder); must not block.
pub type Tap = Arc<dyn Fn(&Window) + Send + Sync>;

struct Shared {
    lanes: Mutex<Lanes>,
    tap: OnceLock<Tap>,
    ready: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    senders: AtomicUsize,
    receiving: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sending side, cloned into every stream.
pub struct WindowSender {
    shared: Arc<Shared>,
}

/// Receiving side: the inference worker (or a command draining one stream).
pub struct WindowReceiver {
    shared: Arc<Shared>,
}

/// A bounded, fair window queue: (sender for the streams, receiver for the worker).
pub fn window_queue(capacity: usize) -> (WindowSender, WindowReceiver) {
    let shared = Arc::new(Shared {
        lanes: Mutex::new(Lanes {
            lanes: Vec::new(),
            turn: 0,
            len: 0,
        }),
        tap: OnceLock::new(),
        ready: Condvar::new(),
        capacity: capacity.max(1),
        dropped: AtomicU64::new(0),
        senders: AtomicUsize::new(1),
        receiving: AtomicBool::new(true),
    });
    (
        WindowSender {
            shared: shared.clone(),
        },
        WindowReceiver { shared },
    )
}

impl Lanes {
    fn lane(&mut self, stream: &Arc<str>) -> &mut Lane {
        let index = match self.lanes.iter().position(|l| l.stream == *stream) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    stream: stream.clone(),
                    windows: VecDeque::new(),
                    dropped: Arc::new(AtomicU64::new(0)),
                });
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[index]
    }

    /// Make room: drop the oldest window of the longest lane, `stream`'s own on a tie.
    fn drop_one(&mut self, stream: &Arc<str>) {
        let longest = self
            .lanes
            .iter()
            .map(|l| l.windows.len())
            .max()
            .unwrap_or(0);
        let victim = self
            .lanes
            .iter()
            .position(|l| l.stream == *stream && l.windows.len() == longest)
            .or_else(|| self.lanes.iter().position(|l| l.windows.len() == longest));
        if let Some(lane) = victim.map(|i| &mut self.lanes[i]) {
            if lane.windows.pop_front().is_some() {
                lane.dropped.fetch_add(1, Ordering::Relaxed);
                self.len -= 1;
            }
        }
    }

    /// The next window, taking the lanes in turn.
    fn take(&mut self) -> Option<Window> {
        let count = self.lanes.len();
        for step in 0..count {
            let index = (self.turn + step) % count;
            if let Some(window) = self.lanes[index].windows.pop_front() {
                self.turn = (index + 1) % count;
                self.len -= 1;
                return Some(window);
            }
        }
        None
    }
}

impl WindowSender {
    /// Queue a window without blocking (making room if full, counted against the stream
    /// that lost a window); `Err` when the receiver is gone.
    pub fn send(&self, window: Window) -> Result<(), Disconnected> {
        if !self.shared.receiving.load(Ordering::SeqCst) {
            return Err(Disconnected);
        }
        if let Some(tap) = self.shared.tap.get() {
            tap(&window);
        }
        let mut lanes = self.shared.lock();
        if lanes.len >= self.shared.capacity {
            lanes.drop_one(&window.stream);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let stream = window.stream.clone();
        lanes.lane(&stream).windows.push_back(window);
        lanes.len += 1;
        drop(lanes);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Show every window to `tap` before it is queued (once; a second tap is refused).
    pub fn set_tap(&self, tap: Tap) -> bool {
        self.shared.tap.set(tap).is_ok()
    }

    /// The counter of `stream`'s windows dropped to make room (its lane's, made now if
    /// the stream has not sent yet).
    pub fn dropped_of(&self, stream: &str) -> Arc<AtomicU64> {
        let stream: Arc<str> = Arc::from(stream);
        self.shared.lock().lane(&stream).dropped.clone()
    }

    /// Windows dropped because the queue was full, over all streams.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Windows the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Windows waiting.
    pub fn len(&self) -> usize {
        self.shared.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for WindowSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        WindowSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for WindowSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last sender: wake a receiver waiting for windows that will not come.
            let _guard = self.shared.lock();
            self.shared.ready.notify_all();
        }
    }
}

impl std::fmt::Debug for WindowSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl WindowReceiver {
    /// The next window, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Window, RecvTimeoutError> {
        self.recv_deadline(Instant::now() + timeout)
    }

    /// The next window, waiting until `deadline`. `Disconnected` once every sender is
    /// gone and nothing is left.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Window, RecvTimeoutError> {
        let mut lanes = self.shared.lock();
        loop {
            if let Some(window) = lanes.take() {
                return Ok(window);
            }
            if self.shared.senders.load(Ordering::SeqCst) == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            lanes = match self.shared.ready.wait_timeout(lanes, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The next window, if one waits.
    pub fn try_recv(&self) -> Option<Window> {
        self.shared.lock().take()
    }

    /// The windows waiting now, taken in turn.
    pub fn try_iter(&self) -> impl Iterator<Item = Window> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }

    pub fn is_empty(&self) -> bool {
        self.shared.lock().len == 0
    }
}

impl Drop for WindowReceiver {
    fn drop(&mut self) {
        self.shared.receiving.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(stream: &str, seq: u64) -> Window {
        Window {
            stream: Arc::from(stream),
            seq,
            timeline: 0,
            start_sample: 0,
            start_wall: std::time::SystemTime::now(),
            end_wall: std::time::SystemTime::now(),
            audio: Vec::new(),
            audio_lead: Vec::new(),
            frames: Vec::new(),
            filled_samples: 0,
            filled_frames: 0,
            ready_at: Instant::now(),
        }
    }

    fn streams(windows: impl Iterator<Item = Window>) -> Vec<(String, u64)> {
        windows.map(|w| (w.stream.to_string(), w.seq)).collect()
    }

    #[test]
    fn a_flooding_stream_loses_its_own_windows_and_the_worker_takes_turns() {
        let (tx, rx) = window_queue(4);
        let steady = tx.dropped_of("steady");
        tx.send(window("steady", 0)).unwrap();
        for seq in 0..10 {
            tx.send(window("flood", seq)).unwrap();
        }
        assert_eq!(steady.load(Ordering::Relaxed), 0);
        assert_eq!(tx.dropped_of("flood").load(Ordering::Relaxed), 7);
        assert_eq!(tx.dropped(), 7);
        tx.send(window("steady", 1)).unwrap(); // drops flood's oldest, not steady's
        assert_eq!(
            streams(rx.try_iter()),
            [
                ("steady".to_string(), 0),
                ("flood".to_string(), 8),
                ("steady".to_string(), 1),
                ("flood".to_string(), 9),
            ]
        );
    }

    #[test]
    fn the_receiver_sees_the_senders_go_after_the_last_window() {
        let (tx, rx) = window_queue(4);
        let clone = tx.clone();
        drop(tx);
        clone.send(window("a", 0)).unwrap();
        let waiter = std::thread::spawn(move || {
            let first = rx.recv_timeout(Duration::from_secs(10)).map(|w| w.seq);
            let then = rx.recv_timeout(Duration::from_secs(10)).map(|w| w.seq);
            (first, then)
        });
        drop(clone);
        assert_eq!(
            waiter.join().unwrap(),
            (Ok(0), Err(RecvTimeoutError::Disconnected))
        );
    }

    #[test]
    fn a_gone_receiver_refuses_windows() {
        let (tx, rx) = window_queue(4);
        drop(rx);
        assert_eq!(tx.send(window("a", 0)), Err(Disconnected));
    }
}
