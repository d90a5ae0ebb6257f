//! The window assembler: one stream's timestamped audio and frames placed on its
//! timeline and cut into windows every hop, gaps filled and counted. (Over half of this
//! file is its tests: the timeline cases are many.)

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Window, WindowConfig};
use crate::features::{IMAGE_BYTES, IMAGES, LEAD_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES};

/// At the end of a file, a last window short of this much audio is padded (0.5 s).
pub const END_TOLERANCE: u64 = SAMPLE_RATE / 2;

const NS_PER_S: u64 = 1_000_000_000;
/// Timestamp jitter within which audio buffers count as contiguous (1 ms).
const JITTER_SAMPLES: u64 = 48;
/// Most frames held: a window's and a minute ahead at 1 fps. Video whose timestamps run
/// far ahead of the audio (a clock jump) would otherwise pile up until the audio got
/// there; beyond this the farthest ahead are let go.
const MAX_FRAMES: usize = IMAGES + 60;

/// Counters of what the assembler had to repair.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerCounts {
    /// Silence inserted for gaps in the audio.
    pub filled_samples: u64,
    /// Late or overlapping audio samples discarded.
    pub dropped_samples: u64,
    /// Frames discarded because their second had already been emitted.
    pub late_frames: u64,
    /// Frames let go because they were too far ahead of the audio ([`MAX_FRAMES`]).
    pub early_frames: u64,
    /// Times the timeline restarted after a gap longer than a window.
    pub resyncs: u64,
}

/// Builds windows from one stream's timestamped audio and frames.
pub struct Assembler {
    stream: Arc<str>,
    hop: u64,
    /// Absolute sample index (running time × 48 kHz) of window 0's start.
    origin: Option<u64>,
    wall_origin: SystemTime,
    /// Audio from absolute index `audio_base`.
    audio: VecDeque<f32>,
    audio_base: u64,
    /// Filled (silence) ranges, absolute [start, end).
    filled: VecDeque<(u64, u64)>,
    /// Frames by timestamp in samples.
    frames: BTreeMap<u64, Arc<[u8]>>,
    next_seq: u64,
    /// This timeline's id (see [`Window::timeline`]).
    timeline: u64,
    /// How far (in samples) the audio may run past a window before missing video is
    /// filled in: a second for live sources; for files, whose branches decode at their
    /// own pace, long enough that decoding order never changes the result.
    video_wait: u64,
    /// The video branch has ended (end of stream): the frames there are are all there
    /// will be, so windows need not wait for more.
    video_ended: bool,
    /// Windows emitted since the last resync (their starts follow `origin`).
    emitted: u64,
    black: Arc<[u8]>,
    counts: AssemblerCounts,
}

/// A timeline id no other window of this process has had.
fn next_timeline() -> u64 {
    static TIMELINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    TIMELINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn ns_to_samples(ns: u64) -> u64 {
    ((ns as u128 * SAMPLE_RATE as u128 + NS_PER_S as u128 / 2) / NS_PER_S as u128) as u64
}

impl Assembler {
    pub fn new(stream: &str, config: &WindowConfig) -> Assembler {
        Assembler {
            stream: Arc::from(stream),
            hop: config.hop_samples().max(1),
            origin: None,
            wall_origin: SystemTime::now(),
            audio: VecDeque::new(),
            audio_base: 0,
            filled: VecDeque::new(),
            frames: BTreeMap::new(),
            next_seq: 0,
            timeline: next_timeline(),
            video_wait: SAMPLE_RATE,
            video_ended: false,
            emitted: 0,
            black: Arc::from(vec![0u8; IMAGE_BYTES]),
            counts: AssemblerCounts::default(),
        }
    }

    /// Number the windows from `seq` on (a restarted stream continues its count).
    pub fn with_first_seq(mut self, seq: u64) -> Assembler {
        self.next_seq = seq;
        self
    }

    /// Wait up to `seconds` of audio past a window's end for its video (default 1 s).
    pub fn with_video_wait(mut self, seconds: f64) -> Assembler {
        self.video_wait = (seconds * SAMPLE_RATE as f64) as u64;
        self
    }

    pub fn counts(&self) -> AssemblerCounts {
        self.counts
    }

    /// Samples of audio currently held (bounded by a window, its lead and a hop).
    pub fn buffered_samples(&self) -> usize {
        self.audio.len()
    }

    /// Frames currently held.
    pub fn buffered_frames(&self) -> usize {
        self.frames.len()
    }

    fn audio_end(&self) -> u64 {
        self.audio_base + self.audio.len() as u64
    }

    fn window_start(&self, index: u64) -> u64 {
        self.origin.unwrap_or(0) + index * self.hop
    }

    /// Add mono samples whose first sample has running time `pts_ns`; returns the windows
    /// that became complete.
    pub fn push_audio(&mut self, pts_ns: u64, samples: &[f32]) -> Vec<Window> {
        let at = ns_to_samples(pts_ns);
        let Some(_) = self.origin else {
            self.origin = Some(at);
            self.wall_origin = SystemTime::now();
            self.audio_base = at;
            self.audio.extend(samples);
            return self.emit_ready();
        };
        let end = self.audio_end();
        if at > end + JITTER_SAMPLES {
            let gap = at - end;
            if gap > (WINDOW_SAMPLES + LEAD_SAMPLES) as u64 {
                // Longer than a window: nothing before is worth finishing. Start over.
                self.counts.resyncs += 1;
                self.resync(at);
                self.audio.extend(samples);
                return self.emit_ready();
            }
            self.audio.extend(std::iter::repeat_n(0.0, gap as usize));
            self.filled.push_back((end, at));
            self.counts.filled_samples += gap;
            self.audio.extend(samples);
        } else if at + JITTER_SAMPLES < end {
            let overlap = ((end - at) as usize).min(samples.len());
            self.counts.dropped_samples += overlap as u64;
            self.audio.extend(&samples[overlap..]);
        } else {
            self.audio.extend(samples);
        }
        self.emit_ready()
    }

    /// The end of a file: emit what waits for late video, and a last window whose audio
    /// falls short by at most [`END_TOLERANCE`] (resampling and container rounding) padded
    /// with silence, counted as filled.
    pub fn finish(&mut self) -> Vec<Window> {
        if self.origin.is_none() {
            return Vec::new();
        }
        let end = self.window_start(self.emitted) + WINDOW_SAMPLES as u64;
        let have = self.audio_end();
        let short = end.saturating_sub(have);
        if short > 0 && short <= END_TOLERANCE {
            self.audio.extend(std::iter::repeat_n(0.0, short as usize));
            self.filled.push_back((have, end));
            self.counts.filled_samples += short;
        }
        self.video_wait = 0;
        self.emit_ready()
    }

    /// The video branch ended: emit the windows that were waiting for frames that will
    /// not come (they repeat the last frame, counted as filled).
    pub fn end_of_video(&mut self) -> Vec<Window> {
        self.video_ended = true;
        self.emit_ready()
    }

    /// Add a frame whose running time is `pts_ns`.
    pub fn push_frame(&mut self, pts_ns: u64, rgb: Arc<[u8]>) -> Vec<Window> {
        let at = ns_to_samples(pts_ns);
        // A looping file's next pass: its video flows again.
        self.video_ended = false;
        // A frame for a second before the next window: no window will show it.
        if self.origin.is_some()
            && self.emitted > 0
            && at + SAMPLE_RATE / 2 < self.window_start(self.emitted)
        {
            self.counts.late_frames += 1;
            return Vec::new();
        }
        self.frames.insert(at, rgb);
        if self.frames.len() > MAX_FRAMES {
            self.frames.pop_last();
            self.counts.early_frames += 1;
        }
        self.emit_ready()
    }

    fn resync(&mut self, at: u64) {
        self.timeline = next_timeline();
        self.origin = Some(at);
        self.wall_origin = SystemTime::now();
        self.audio.clear();
        self.audio_base = at;
        self.filled.clear();
        self.emitted = 0;
        // Keep the newest frame: it may still be the right one for the first second.
        if let Some((&t, f)) = self.frames.iter().next_back() {
            let f = f.clone();
            self.frames.clear();
            self.frames.insert(t, f);
        }
    }

    fn emit_ready(&mut self) -> Vec<Window> {
        let mut out = Vec::new();
        loop {
            let start = self.window_start(self.emitted);
            let end = start + WINDOW_SAMPLES as u64;
            if self.audio_end() < end {
                break;
            }
            // Wait for the last second's frame (video runs at 1 fps after videorate)
            // unless the audio is `video_wait` past the window: then video is late, fill.
            // The newest frame held is the newest seen (pruning and resyncs keep it).
            let latest = self.frames.last_key_value().map(|(&t, _)| t);
            let video_ready =
                self.video_ended || latest.is_some_and(|l| l + JITTER_SAMPLES >= end - SAMPLE_RATE);
            if !video_ready && self.audio_end() < end + self.video_wait {
                break;
            }
            out.push(self.cut(start));
            self.emitted += 1;
            self.next_seq += 1;
            self.prune();
        }
        out
    }

    fn cut(&mut self, start: u64) -> Window {
        let end = start + WINDOW_SAMPLES as u64;
        let from = (start - self.audio_base) as usize;
        let audio: Vec<f32> = self
            .audio
            .range(from..from + WINDOW_SAMPLES)
            .copied()
            .collect();
        let lead_start = start.saturating_sub(LEAD_SAMPLES as u64);
        let mut audio_lead = vec![0.0f32; LEAD_SAMPLES];
        let have_from = lead_start.max(self.audio_base);
        if have_from < start {
            let offset = (have_from - lead_start) as usize;
            let src = (have_from - self.audio_base) as usize;
            for (i, s) in self.audio.range(src..from).enumerate() {
                audio_lead[offset + i] = *s;
            }
        }
        let filled_samples: u64 = self
            .filled
            .iter()
            .map(|&(a, b)| b.min(end).saturating_sub(a.max(start)))
            .sum();
        let mut frames = Vec::with_capacity(IMAGES);
        let mut filled_frames = 0;
        for slot in 0..IMAGES as u64 {
            let slot_start = start + slot * SAMPLE_RATE;
            let centre = slot_start + SAMPLE_RATE / 2;
            match self.frames.range(..=centre).next_back() {
                Some((&t, f)) => {
                    // A frame from before this second is a repeat.
                    if t + SAMPLE_RATE < slot_start + SAMPLE_RATE / 2 {
                        filled_frames += 1;
                    }
                    frames.push(f.clone());
                }
                None => {
                    filled_frames += 1;
                    frames.push(self.black.clone());
                }
            }
        }
        let origin = self.origin.unwrap_or(start);
        let wall = |sample: u64| {
            self.wall_origin + Duration::from_nanos((sample - origin) * NS_PER_S / SAMPLE_RATE)
        };
        Window {
            stream: self.stream.clone(),
            seq: self.next_seq,
            timeline: self.timeline,
            start_sample: start - origin,
            start_wall: wall(start),
            end_wall: wall(end),
            audio,
            audio_lead,
            frames,
            filled_samples: filled_samples as usize,
            filled_frames,
            ready_at: std::time::Instant::now(),
        }
    }

    /// Drop what no future window needs.
    fn prune(&mut self) {
        let next_start = self.window_start(self.emitted);
        let keep_from = next_start
            .saturating_sub(LEAD_SAMPLES as u64)
            .max(self.audio_base);
        let drop = (keep_from - self.audio_base) as usize;
        self.audio.drain(..drop.min(self.audio.len()));
        self.audio_base = keep_from;
        while self.filled.front().is_some_and(|&(_, b)| b <= keep_from) {
            self.filled.pop_front();
        }
        // Keep the newest frame at or before the next window's first centre, and all after.
        let first_centre = next_start + SAMPLE_RATE / 2;
        if let Some(&keep) = self
            .frames
            .range(..=first_centre)
            .next_back()
            .map(|(t, _)| t)
        {
            self.frames = self.frames.split_off(&keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn frame(v: u8) -> Arc<[u8]> {
        Arc::from(vec![v; IMAGE_BYTES])
    }

    /// Feed `seconds` of audio in 0.1 s buffers (value = second index) and a frame per
    /// second (value = second index), starting at `t0`.
    fn feed(a: &mut Assembler, t0: u64, seconds: u64) -> Vec<Window> {
        let mut out = Vec::new();
        for tenth in 0..seconds * 10 {
            let pts = t0 + tenth * SECOND_NS / 10;
            if tenth % 10 == 0 {
                out.extend(a.push_frame(pts, frame((tenth / 10) as u8)));
            }
            out.extend(a.push_audio(pts, &vec![(tenth / 10) as f32; 4800]));
        }
        out
    }

    #[test]
    fn the_end_of_a_file_pads_a_nearly_full_last_window() {
        // 9.7 s of audio and frames: 0.3 s short, padded with silence and counted.
        let mut a = Assembler::new("file", &WindowConfig::default());
        assert!(feed(&mut a, 0, 9).is_empty());
        for tenth in 0..7u64 {
            let pts = (90 + tenth) * SECOND_NS / 10;
            assert!(a.push_audio(pts, &[9.0; 4800]).is_empty());
        }
        let last = a.finish();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].filled_samples, 3 * 4800);
        assert_eq!(last[0].audio[WINDOW_SAMPLES - 1], 0.0);
        assert_eq!(last[0].frames.len(), IMAGES);
        // 8 s is too short for a window: nothing is made up.
        let mut b = Assembler::new("file", &WindowConfig::default());
        feed(&mut b, 0, 8);
        assert!(b.finish().is_empty());
    }

    #[test]
    fn windows_are_exact_and_a_hop_apart() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        let windows = feed(&mut a, 0, 14);
        assert_eq!(windows.len(), 5, "windows starting at 0..=4 s end by 14 s");
        for (i, w) in windows.iter().enumerate() {
            assert_eq!(w.seq, i as u64);
            assert_eq!(w.audio.len(), WINDOW_SAMPLES);
            assert_eq!(w.frames.len(), IMAGES);
            assert_eq!(w.start_sample, i as u64 * 48_000);
            assert_eq!((w.filled_samples, w.filled_frames), (0, 0));
            // Second j of window i holds audio and a frame of second i + j.
            for j in 0..10 {
                assert_eq!(w.audio[j * 48_000 + 100], (i + j) as f32);
                assert_eq!(w.frames[j][0], (i + j) as u8);
            }
            if i > 0 {
                assert!(w.start_wall > windows[i - 1].start_wall);
                assert_eq!(
                    w.audio_lead[0],
                    (i - 1) as f32,
                    "the lead is the half-second before"
                );
            } else {
                assert!(
                    w.audio_lead.iter().all(|&s| s == 0.0),
                    "before the stream: zeros"
                );
            }
        }
        assert!(a.buffered_samples() <= WINDOW_SAMPLES + LEAD_SAMPLES + 48_000);
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        let windows = feed(&mut a, 0, 300);
        assert_eq!(windows.len(), 291);
        assert!(
            a.buffered_samples() <= WINDOW_SAMPLES + LEAD_SAMPLES + 48_000,
            "{}",
            a.buffered_samples()
        );
        assert!(a.buffered_frames() <= 12, "{}", a.buffered_frames());
    }

    #[test]
    fn gaps_are_filled_with_silence_and_repeated_frames_and_counted() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        let mut windows = feed(&mut a, 0, 3);
        // Seconds 3 and 4 are missing entirely.
        for tenth in 50..130u64 {
            let pts = tenth * SECOND_NS / 10;
            if tenth % 10 == 0 {
                windows.extend(a.push_frame(pts, frame((tenth / 10) as u8)));
            }
            windows.extend(a.push_audio(pts, &vec![1.0; 4800]));
        }
        let w = &windows[0];
        assert_eq!(w.filled_samples, 2 * 48_000);
        assert!(w.audio[3 * 48_000..5 * 48_000].iter().all(|&s| s == 0.0));
        assert_eq!(w.filled_frames, 2);
        assert_eq!(w.frames[3][0], 2, "second 3 repeats the frame of second 2");
        assert_eq!(a.counts().filled_samples, 96_000);
    }

    #[test]
    fn late_audio_is_dropped_and_jitter_is_tolerated() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        a.push_audio(0, &[0.5; 4800]);
        a.push_audio(SECOND_NS / 10 + 10_000, &[0.5; 4800]); // 10 µs late: contiguous
        a.push_audio(SECOND_NS / 20, &[0.5; 4800]); // wholly before the end: dropped
        assert_eq!(a.counts().dropped_samples, 4800);
        a.push_audio(3 * SECOND_NS / 20, &[0.5; 4800]); // overlaps the last 0.05 s
        assert_eq!(a.counts().dropped_samples, 4800 + 2400);
        assert_eq!(a.counts().filled_samples, 0);
        assert_eq!(a.buffered_samples(), 9600 + 2400);
    }

    #[test]
    fn a_file_waits_for_its_video_however_far_the_audio_runs_ahead() {
        let config = WindowConfig::default();
        let mut a = Assembler::new("file", &config).with_video_wait(120.0);
        // 20 s of sound decoded before any picture: nothing is emitted early ...
        let mut windows = Vec::new();
        for tenth in 0..200u64 {
            let pts = tenth * SECOND_NS / 10;
            windows.extend(a.push_audio(pts, &vec![(tenth / 10) as f32; 4800]));
        }
        assert!(windows.is_empty());
        // ... and once the frames come, the windows are those of an in-order decode.
        for second in 0..20u64 {
            windows.extend(a.push_frame(second * SECOND_NS, frame(second as u8)));
        }
        let reference = feed(&mut Assembler::new("file", &config), 0, 20);
        assert_eq!(windows.len(), reference.len());
        for (w, r) in windows.iter().zip(&reference) {
            assert_eq!(
                (w.start_sample, w.filled_frames, w.filled_samples),
                (r.start_sample, 0, 0)
            );
            assert_eq!(w.audio, r.audio);
            assert!(w.frames.iter().zip(&r.frames).all(|(f, g)| f == g));
        }
        // A picture track that ends before the sound: its end releases the windows, the
        // last frame repeated and counted.
        let mut b = Assembler::new("file", &config).with_video_wait(120.0);
        for tenth in 0..150u64 {
            let pts = tenth * SECOND_NS / 10;
            if tenth % 10 == 0 && tenth < 50 {
                assert!(b.push_frame(pts, frame((tenth / 10) as u8)).is_empty());
            }
            assert!(b.push_audio(pts, &[0.1; 4800]).is_empty());
        }
        let released = b.end_of_video();
        assert_eq!(released.len(), 6, "windows starting at 0..=5 s end by 15 s");
        assert_eq!(released[0].filled_frames, 5);
        assert_eq!(released[0].frames[9][0], 4);
    }

    #[test]
    fn video_that_never_arrives_is_black_and_counted() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        let mut windows = Vec::new();
        for tenth in 0..115u64 {
            windows.extend(a.push_audio(tenth * SECOND_NS / 10, &[0.1; 4800]));
        }
        assert_eq!(
            windows.len(),
            1,
            "emitted once the audio is a second past the window"
        );
        assert_eq!(windows[0].filled_frames, 10);
        assert!(windows[0].frames.iter().all(|f| f[0] == 0));
    }

    #[test]
    fn a_gap_longer_than_a_window_restarts_the_timeline() {
        let mut a = Assembler::new("s", &WindowConfig::default());
        feed(&mut a, 0, 5);
        let windows = feed(&mut a, 3600 * SECOND_NS, 11);
        assert_eq!(a.counts().resyncs, 1);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].filled_samples, 0);
    }

    #[test]
    fn half_second_hops() {
        let config = WindowConfig {
            hop_s: 0.5,
            ..Default::default()
        };
        assert_eq!(config.hop_samples(), 24_000);
        let mut a = Assembler::new("s", &config);
        let windows = feed(&mut a, 0, 12);
        let starts: Vec<u64> = windows.iter().map(|w| w.start_sample).collect();
        assert_eq!(starts, vec![0, 24_000, 48_000, 72_000, 96_000]);
    }
}
