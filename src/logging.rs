//! Logging: a human format with colour on a terminal, plain lines otherwise (journald
//! adds its own timestamps, so those are left out when running under it).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `level` (from `--log-level`) wins over `RUST_LOG`;
/// with neither, `info`.
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let terminal = std::io::stderr().is_terminal();
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal)
        .with_target(false);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if journald {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
