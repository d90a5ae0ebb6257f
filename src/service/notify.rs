//! sd_notify: tells systemd (`Type=notify`) that the daemon is ready, what it is doing,
//! that it is alive and that it is stopping. The protocol is one datagram per message to
//! the socket in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace); outside
//! systemd the variable is unset and every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let address = match path.as_encoded_bytes() {
                [b'@', name @ ..] => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name)
                }
                _ => SocketAddr::from_pathname(&path),
            };
            // Never block the main loop on a manager that does not read.
            let socket = UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s));
            match (socket, address) {
                (Ok(socket), Ok(address)) => Some((socket, address)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("NOTIFY_SOCKET {path:?}: {e}; not notifying systemd");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// The watchdog timeout systemd expects pings within, when it set one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(e) = socket.send_to_addr(message.as_bytes(), address)
        {
            tracing::debug!("sd_notify {message:?}: {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A one-line summary shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }
}
