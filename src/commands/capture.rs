//! `avscene capture`: run one stream and report each window; optionally save them.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::context::{CommandError, ConfigArg, Result, println};
use crate::capture::{StreamState, StreamStats, Until, save_window, spawn, window_queue};
use crate::config::Settings;
use crate::features::SAMPLE_RATE;
use crate::support::process;
use crate::window::Window;

/// Run one stream and print a line per 10 s window (samples, frames, gaps filled, audio
/// level); optionally save each window as WAV + PNG files, to see what the model sees.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The stream to run [default: the first enabled one].
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Stop after this many seconds [default: when the stream ends].
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
    /// Save each window in DIR/<stream>-<seq>/ (audio.wav, frame-0.png …).
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
}

/// The configured stream named `name`, or the first enabled one.
pub fn pick_stream(settings: &Settings, name: Option<&str>) -> Result<crate::capture::StreamSpec> {
    let spec = match name {
        Some(name) => settings.streams.iter().find(|s| s.name == name),
        None => settings.streams.first(),
    };
    spec.cloned().ok_or_else(|| {
        let names: Vec<&str> = settings.streams.iter().map(|s| s.name.as_str()).collect();
        CommandError::Input(format!(
            "--stream: no enabled stream named '{}' (streams: {})",
            name.unwrap_or(""),
            names.join(", ")
        ))
    })
}

pub fn run(args: CaptureArgs) -> Result {
    let deadline = match args.seconds {
        Some(s) if s.is_finite() && s > 0.0 && s <= 1e7 => {
            Some(Instant::now() + Duration::from_secs_f64(s))
        }
        Some(s) => {
            return Err(CommandError::Input(format!(
                "--seconds must be a positive number of seconds, not {s}"
            )));
        }
        None => None,
    };
    let settings = args.config.load()?;
    settings.log_warnings();
    let spec = pick_stream(&settings, args.stream.as_deref())?;
    if let Some(dir) = &args.save_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| CommandError::Failed(format!("{}: {e}", dir.display())))?;
    }
    let name = spec.name.clone();
    let (tx, rx) = window_queue(settings.config.inference.queue_capacity);
    let handle = spawn(
        spec,
        settings.config.capture.clone(),
        settings.config.window.clone(),
        tx,
    );
    let resources = Resources::now();
    eprintln!(
        "capturing stream '{name}'{}; the first window comes after 10 s",
        args.seconds
            .map(|s| format!(" for {s} s"))
            .unwrap_or_default()
    );
    let mut count = 0u64;
    let until = Until {
        deadline,
        ..Until::default()
    };
    handle.drain(&rx, until, |w| {
        count += 1;
        let dropped = handle.stats.dropped.load(Ordering::Relaxed);
        println(window_line(&w, dropped, args.save_dir.as_deref()));
        std::ops::ControlFlow::Continue(())
    });
    let stats = handle.stats.clone();
    handle.stop();
    eprintln!("{}", summary(&name, count, &stats, &resources));
    if count == 0 {
        return Err(CommandError::Failed(format!("stream '{name}': no window")));
    }
    Ok(())
}

/// A window's line: its samples and frames, what was filled in, loudness, drops and
/// memory; saved as files when asked.
fn window_line(w: &Window, dropped: u64, save_dir: Option<&std::path::Path>) -> String {
    let start = w.start_sample as f64 / SAMPLE_RATE as f64;
    let mut line = format!(
        "window {:>5}  t={start:>8.1}s  samples={} frames={}  filled: {} samples, {} frames  rms={:.4}  dropped={dropped}  rss={:.0} MB",
        w.seq,
        w.audio.len(),
        w.frames.len(),
        w.filled_samples,
        w.filled_frames,
        w.audio_rms(),
        process::rss_bytes().unwrap_or(0) as f64 / 1e6,
    );
    if let Some(dir) = save_dir {
        match save_window(dir, w) {
            Ok(path) => line.push_str(&format!("  saved {}", path.display())),
            Err(e) => line.push_str(&format!("  not saved: {e}")),
        }
    }
    line
}

/// The process's time and memory when the capture started.
struct Resources {
    started: Instant,
    cpu: f64,
    rss: u64,
}

impl Resources {
    fn now() -> Resources {
        Resources {
            started: Instant::now(),
            cpu: process::cpu_seconds().unwrap_or(0.0),
            rss: process::rss_bytes().unwrap_or(0),
        }
    }
}

/// What the stream did and what it cost.
fn summary(name: &str, count: u64, stats: &StreamStats, start: &Resources) -> String {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut summary = format!(
        "stream '{name}': {count} windows, {} dropped, {} restarts, {} faults",
        load(&stats.dropped),
        load(&stats.restarts),
        load(&stats.faults)
    );
    if let Some(e) = stats.last_error() {
        summary.push_str(&format!("; last error: {e}"));
    }
    let wall = start.started.elapsed().as_secs_f64();
    let cpu = process::cpu_seconds().unwrap_or(0.0) - start.cpu;
    summary.push_str(&format!(
        "\nresources: {cpu:.1} s CPU over {wall:.1} s ({:.1} % of one core); resident memory {:.0} MB at start, {:.0} MB at end",
        100.0 * cpu / wall.max(1e-9),
        start.rss as f64 / 1e6,
        process::rss_bytes().unwrap_or(0) as f64 / 1e6
    ));
    if let StreamState::Backoff { reason, .. } = stats.state() {
        summary.push_str(&format!("; failing: {reason}"));
    }
    summary
}
