//! Small tools every stage may use, importing none of them: progress bars, avscene's
//! data folder, a stable hash, a seeded random generator, and this process's resource figures.

pub mod cpu;
pub mod metrics;
pub mod process;

/// A progress bar on a terminal; hidden otherwise (logs carry the per-step lines).
pub fn progress(len: u64, prefix: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_string());
    bar
}

/// Where there is no terminal to draw `bar` on (journald, a pipe), say its progress in
/// the log at most every 30 s; `last` is when it was last said.
pub fn log_progress(bar: &indicatif::ProgressBar, what: &str, last: &mut std::time::Instant) {
    if !bar.is_hidden() || last.elapsed() < std::time::Duration::from_secs(30) {
        return;
    }
    *last = std::time::Instant::now();
    tracing::info!(
        "{what}: {}/{} done, {:.2}/s, about {} left",
        bar.position(),
        bar.length().unwrap_or(0),
        bar.per_sec(),
        humantime::format_duration(std::time::Duration::from_secs(bar.eta().as_secs()))
    );
}

/// Choose rustls's crypto provider for the process (ring) before any TLS connection:
/// two crates bring a provider each (ureq ring, rumqttc aws-lc-rs), and with two rustls
/// will not guess. Calling it again is harmless.
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A download's progress bar on a terminal (bytes, rate, time left); hidden otherwise.
pub fn download_progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(len) => indicatif::ProgressBar::new(len),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg}\n[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// avscene's own data folder: the service's state directory (`$STATE_DIRECTORY`, which
/// systemd sets to /var/lib/avscene), else /var/lib/avscene where this user may write
/// there (an installed service's, from a shell), else `~/.local/share/avscene`.
pub fn state_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    let state = std::env::var_os("STATE_DIRECTORY").and_then(|s| {
        // systemd may list several, separated by ':'; the first is avscene's own.
        s.to_str()
            .and_then(|s| s.split(':').next())
            .map(PathBuf::from)
    });
    let installed = || {
        let dir = PathBuf::from("/var/lib/avscene");
        let writable = std::ffi::CString::new("/var/lib/avscene")
            // SAFETY: a NUL-terminated path that lives for the call.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0);
        writable.then_some(dir)
    };
    let data = || {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .map(|d| d.join("avscene"))
    };
    state
        .or_else(installed)
        .or_else(data)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// 64-bit FNV-1a: a stable, dependency-free fingerprint for model ids and cache keys
/// (not security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Values by label, serialised as a JSON object in label order (`{"park": 0.9, …}`):
/// class probabilities in scene messages and reports.
pub struct ByLabel<'a> {
    pub labels: &'a [String],
    pub values: &'a [f32],
}

impl serde::Serialize for ByLabel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.labels.iter().zip(self.values))
    }
}

/// The index of the largest value (the first of equals); 0 for none.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

/// A small deterministic generator (splitmix64): the same seed makes the same sequence.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
