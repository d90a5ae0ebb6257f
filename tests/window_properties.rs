//! Property tests of the window assembler: whatever buffers a source delivers — random
//! sizes, gaps, duplicates, timestamps out of order or jumping either way, video ahead,
//! behind or missing — every window has exactly 10 s of audio and 10 frames, windows
//! are numbered one after another and start later than the one before (a hop later on
//! its timeline, or on a new timeline after a gap longer than a window), and what the
//! assembler holds stays bounded.

use std::sync::Arc;

use avscene::features::{IMAGE_BYTES, IMAGES, LEAD_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES};
use avscene::window::{Assembler, Window, WindowConfig};
use proptest::prelude::*;

const NS_PER_SAMPLE: u64 = 1_000_000_000 / SAMPLE_RATE;

/// What a source may do next.
#[derive(Debug, Clone)]
enum Event {
    /// Audio of `len` samples, `jump` samples off where the last buffer ended.
    Audio { len: usize, jump: i64 },
    /// The last audio buffer again, at the same timestamp.
    Duplicate,
    /// A frame `offset` samples from where the audio is.
    Frame { offset: i64 },
    /// The video branch ended.
    EndOfVideo,
}

fn event() -> impl Strategy<Value = Event> {
    let len = 1usize..20_000;
    // Mostly a source behaving, with faults now and then: a long run between big jumps
    // is what lets windows complete at all.
    prop_oneof![
        40 => len.clone().prop_map(|len| Event::Audio { len, jump: 0 }),
        2 => (len.clone(), -48_000i64..48_000).prop_map(|(len, jump)| Event::Audio { len, jump }),
        1 => (len, prop_oneof![-(20 * 48_000i64)..0, 500_000i64..5_000_000])
            .prop_map(|(len, jump)| Event::Audio { len, jump }),
        1 => Just(Event::Duplicate),
        10 => (-96_000i64..96_000).prop_map(|offset| Event::Frame { offset }),
        1 => (1_000_000i64..200_000_000).prop_map(|offset| Event::Frame { offset }),
        1 => Just(Event::EndOfVideo),
    ]
}

fn check(window: &Window, previous: Option<&Window>) -> Result<(), TestCaseError> {
    prop_assert_eq!(window.audio.len(), WINDOW_SAMPLES);
    prop_assert_eq!(window.audio_lead.len(), LEAD_SAMPLES);
    prop_assert_eq!(window.frames.len(), IMAGES);
    prop_assert!(window.frames.iter().all(|f| f.len() == IMAGE_BYTES));
    prop_assert!(window.audio.iter().all(|s| s.is_finite()));
    if let Some(p) = previous {
        prop_assert_eq!(window.seq, p.seq + 1);
        // Later on the same timeline, or on a new one (after a gap longer than a window).
        prop_assert!(
            (window.timeline, window.start_sample) > (p.timeline, p.start_sample),
            "start {:?} after {:?}",
            (window.timeline, window.start_sample),
            (p.timeline, p.start_sample)
        );
        if window.timeline == p.timeline {
            prop_assert_eq!((window.start_sample - p.start_sample) % SAMPLE_RATE, 0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_window_is_whole_numbered_in_order_and_memory_stays_bounded(
        events in prop::collection::vec(event(), 1..800),
        live in any::<bool>(),
    ) {
        let config = WindowConfig::default();
        let wait = if live { 1.0 } else { 30.0 };
        let mut assembler = Assembler::new("prop", &config).with_video_wait(wait);
        let frame: Arc<[u8]> = Arc::from(vec![7u8; IMAGE_BYTES]);
        let mut at: u64 = 0; // where the next audio buffer would start, in samples
        let mut last: Option<(u64, Vec<f32>)> = None;
        let mut previous: Option<Window> = None;
        let hold = WINDOW_SAMPLES + LEAD_SAMPLES + (wait as usize + 2) * SAMPLE_RATE as usize;
        for event in events {
            let windows = match event {
                Event::Audio { len, jump } => {
                    let start = at.saturating_add_signed(jump);
                    let samples: Vec<f32> = (0..len).map(|i| ((start + i as u64) % 97) as f32 / 97.0).collect();
                    at = start + len as u64;
                    let out = assembler.push_audio(start * NS_PER_SAMPLE, &samples);
                    last = Some((start, samples));
                    out
                }
                Event::Duplicate => match &last {
                    Some((start, samples)) => assembler.push_audio(start * NS_PER_SAMPLE, samples),
                    None => Vec::new(),
                },
                Event::Frame { offset } => {
                    let t = at.saturating_add_signed(offset);
                    assembler.push_frame(t * NS_PER_SAMPLE, frame.clone())
                }
                Event::EndOfVideo => assembler.end_of_video(),
            };
            for w in windows {
                check(&w, previous.as_ref())?;
                previous = Some(w);
            }
            prop_assert!(
                assembler.buffered_samples() <= hold + 20_000,
                "{} samples held", assembler.buffered_samples()
            );
            prop_assert!(
                assembler.buffered_frames() <= IMAGES + 60,
                "{} frames held", assembler.buffered_frames()
            );
        }
        for w in assembler.finish() {
            check(&w, previous.as_ref())?;
            previous = Some(w);
        }
    }
}

#[test]
fn video_far_ahead_of_the_audio_is_let_go_and_counted() {
    let mut assembler = Assembler::new("ahead", &WindowConfig::default());
    let frame: Arc<[u8]> = Arc::from(vec![1u8; IMAGE_BYTES]);
    assembler.push_audio(0, &vec![0.1; SAMPLE_RATE as usize]);
    // A video clock that jumped an hour ahead, then runs on at 1 fps for 200 s.
    for second in 0..200u64 {
        assembler.push_frame((3600 + second) * 1_000_000_000, frame.clone());
    }
    assert_eq!(assembler.buffered_frames(), IMAGES + 60);
    assert_eq!(assembler.counts().early_frames, 200 - (IMAGES as u64 + 60));
}
