//! The tch model against the PyTorch reference (tests/parity/reference.py): the same
//! parameter names, and the same outputs to 1e-4 for every part, from deterministic
//! weights and inputs. Golden outputs: tests/parity/golden.safetensors (make_golden.py).

mod common;

use std::collections::HashMap;

use avscene::features::{FeatureSpec, spectrogram};
use avscene::model::{Model, ModelSpec};
use common::{deterministic_init, input_tensor, rel_diff};
use tch::{Device, Tensor};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/parity/golden.safetensors"
);
const TOLERANCE: f64 = 1e-4;

fn golden() -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let bytes = std::fs::read(GOLDEN).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    let tensors = Tensor::read_safetensors(GOLDEN)
        .unwrap()
        .into_iter()
        .collect();
    (tensors, meta)
}

fn check(name: &str, ours: &Tensor, golden: &HashMap<String, Tensor>) {
    let diff = rel_diff(ours, &golden[name]);
    assert!(
        diff < TOLERANCE,
        "{name}: relative difference {diff:e} ≥ {TOLERANCE:e}"
    );
}

fn deterministic_model(spec: ModelSpec, meta: &HashMap<String, String>, key: &str) -> Model {
    let model = Model::fresh(spec, Device::Cpu);
    let names = deterministic_init(&model.vs);
    let reference: Vec<String> = serde_json::from_str(&meta[key]).unwrap();
    assert_eq!(
        names, reference,
        "parameter names differ from the PyTorch reference"
    );
    model
}

#[test]
fn full_model_matches_pytorch_part_by_part() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::full(), &meta, "names_full");
    let net = &model.net;
    tch::no_grad(|| {
        let emb = input_tensor(&[2, 96, 512], 0.1, 1.0, 0.013);
        let images = input_tensor(&[2, 3, 224, 224], 0.2, 1.5, 0.013);
        check("audio_net", &net.audio_net.forward_t(&emb, false), &golden);
        check("video", &net.embed_images(&images, false), &golden);
        check(
            "head",
            &net.head_t(&emb, &input_tensor(&[2, 10, 256], 0.3, 1.0, 0.013), false),
            &golden,
        );
        let images10 = input_tensor(&[1, 10, 3, 224, 224], 0.2, 1.5, 0.013);
        check(
            "forward",
            &net.forward_t(
                &input_tensor(&[1, 96, 512], 0.1, 1.0, 0.013),
                &images10,
                false,
            ),
            &golden,
        );
        let frames = input_tensor(&[2, 48000], 0.4, 0.3, 0.0575);
        check(
            "openl3_spectrogram",
            &net.openl3.spectrogram(&frames),
            &golden,
        );
        check("openl3", &net.embed_audio_frames(&frames), &golden);
    });
}

#[test]
fn attention_block_matches_pytorch() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::full(), &meta, "names_full");
    let emb = input_tensor(&[2, 96, 512], 0.1, 1.0, 0.013);
    // The audio branch's attention is its first stage: compare through a branch whose
    // convolutions are bypassed by running the encoder alone.
    let out = tch::no_grad(|| model.net.audio_net.encoder1().forward(&emb));
    check("attention", &out, &golden);
}

#[test]
fn small_profile_matches_pytorch() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::small(), &meta, "names_small");
    tch::no_grad(|| {
        let emb = input_tensor(&[2, 96, 512], 0.1, 1.0, 0.013);
        let images = input_tensor(&[2, 10, 3, 224, 224], 0.2, 1.5, 0.013);
        check(
            "small_forward",
            &model.net.forward_t(&emb, &images, false),
            &golden,
        );
        let frames = input_tensor(&[2, 48000], 0.4, 0.3, 0.0575);
        check(
            "small_openl3",
            &model.net.embed_audio_frames(&frames),
            &golden,
        );
    });
}

#[test]
fn front_end_defaults_match_the_reference() {
    let (golden, _) = golden();
    let f = FeatureSpec::default();
    let (real, imag) = spectrogram::dft_kernels(f.n_dft);
    let rows = Tensor::from_slice(&[0i64, 1, 100, 1024]);
    check("dft_real_rows", &real.index_select(0, &rows), &golden);
    check("dft_imag_rows", &imag.index_select(0, &rows), &golden);
    // mel filters are ~1e-4 in size: compare absolutely, tighter.
    let mel = spectrogram::mel_basis(f.sample_rate, f.n_dft, f.n_mels);
    let diff = (&mel - &golden["mel_basis"]).abs().max().double_value(&[]);
    assert!(diff < 1e-7, "mel basis differs by {diff:e}");
}

#[test]
fn the_fft_front_end_equals_the_kernel_convolution_above_the_noise_floor() {
    let model = Model::fresh(ModelSpec::small(), Device::Cpu);
    let openl3 = &model.net.openl3;
    assert!(!openl3.uses_fft(), "the exact convolution is the default");
    // A tone over broadband (deterministic, noise-like) content, like a recording.
    let noise = input_tensor(&[3, 48000], 0.9, 0.01, 1.37);
    let frames = input_tensor(&[3, 48000], 0.4, 0.3, 0.0575) + noise;
    tch::no_grad(|| {
        let conv = openl3.spectrogram_conv(&frames);
        assert!(openl3.set_fft(true));
        let fft = openl3.spectrogram(&frames);
        // Where the spectrum is within 40 dB of its peak (float32 rounding shows below).
        let audible = conv.ge(-40.0);
        let diff = (&fft - &conv)
            .abs()
            .masked_select(&audible)
            .max()
            .double_value(&[]);
        assert!(
            diff < 0.01,
            "FFT and convolution differ by {diff} dB above the noise floor"
        );
        let d = rel_diff(&openl3.forward(&frames), &{
            openl3.set_fft(false);
            openl3.forward(&frames)
        });
        // Tones leave much of the spectrum near the floor, where the two differ: ~1 %.
        assert!(d < 2e-2, "embeddings differ by {d:e}");
    });
    // Custom kernels (a model file's) cannot run by FFT.
    tch::no_grad(|| {
        let vars = model.vs.variables();
        let mut k = vars["openl3.speclayer.dft_real_kernels"].shallow_clone();
        let _ = k.g_mul_scalar_(1.5);
    });
    assert!(!openl3.set_fft(true));
}

#[test]
fn folded_batch_norms_give_the_layer_by_layer_result() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::full(), &meta, "names_full");
    let frames = input_tensor(&[2, 48000], 0.4, 0.3, 0.0575);
    let layered = tch::no_grad(|| model.net.openl3.forward_layers(&frames));
    let folded = tch::no_grad(|| model.net.embed_audio_frames(&frames));
    assert!(rel_diff(&folded, &layered) < 1e-5);
    check("openl3", &layered, &golden);
}

#[test]
fn the_blocked_cpu_layout_gives_the_plain_layouts_result() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::full(), &meta, "names_full");
    let openl3 = &model.net.openl3;
    let frames = input_tensor(&[2, 48000], 0.4, 0.3, 0.0575);
    if !openl3.uses_blocked() {
        common::cannot_run("onednn", "this libtorch was built without oneDNN");
        return;
    }
    let blocked = tch::no_grad(|| openl3.forward(&frames));
    assert!(!openl3.set_blocked(false) && !openl3.uses_blocked());
    let plain = tch::no_grad(|| openl3.forward(&frames));
    assert!(openl3.set_blocked(true));
    let diff = rel_diff(&blocked, &plain);
    assert!(diff < 1e-5, "blocked vs plain: {diff:e}");
    check("openl3", &blocked, &golden);
    // A weight written in place (as loading a model file writes it) reaches both the
    // folded and the packed copies.
    tch::no_grad(|| {
        let mut w = model.vs.variables()["openl3.conv2d_4.weight"].shallow_clone();
        let _ = w.g_mul_scalar_(0.5);
    });
    let blocked = tch::no_grad(|| openl3.forward(&frames));
    assert!(!openl3.set_blocked(false));
    let plain = tch::no_grad(|| openl3.forward(&frames));
    assert!(openl3.set_blocked(true));
    assert!(
        rel_diff(&blocked, &golden["openl3"]) > 1e-3,
        "the change shows"
    );
    let diff = rel_diff(&blocked, &plain);
    assert!(diff < 1e-5, "after the change, blocked vs plain: {diff:e}");
}

#[test]
fn the_blocked_image_trunk_gives_the_plain_result_and_follows_weight_changes() {
    let (golden, meta) = golden();
    let model = deterministic_model(ModelSpec::full(), &meta, "names_full");
    let video = &model.net.video;
    if !video.uses_blocked() {
        common::cannot_run("onednn", "this libtorch was built without oneDNN");
        return;
    }
    let images = input_tensor(&[2, 3, 224, 224], 0.2, 1.5, 0.013);
    let embed = |blocked: bool| {
        assert_eq!(video.set_blocked(blocked), blocked);
        tch::no_grad(|| video.forward_t(&images, false))
    };
    let (blocked, plain) = (embed(true), embed(false));
    let diff = rel_diff(&blocked, &plain);
    assert!(diff < 1e-5, "blocked vs plain: {diff:e}");
    check("video", &blocked, &golden);
    // A weight written in place (as an optimizer step writes it) is seen by the next
    // blocked forward: the packed copy is rebuilt, not reused.
    tch::no_grad(|| {
        let vars = model.vs.variables();
        let mut w = vars["video.resnet.layer4.2.conv3.weight"].shallow_clone();
        let _ = w.g_mul_scalar_(0.5);
        let mut mean = vars["video.resnet.layer1.0.bn2.running_mean"].shallow_clone();
        let _ = mean.g_add_scalar_(0.25);
    });
    let (blocked, plain) = (embed(true), embed(false));
    assert!(
        rel_diff(&blocked, &golden["video"]) > 1e-3,
        "the change shows"
    );
    let diff = rel_diff(&blocked, &plain);
    assert!(diff < 1e-5, "after the change, blocked vs plain: {diff:e}");
}

/// Whether libtorch can run int8 here; says why not where it cannot.
fn int8_available() -> bool {
    let engine = avscene::model::int8::engine();
    if let Err(e) = &engine {
        common::cannot_run("int8", &e.to_string());
    }
    engine.is_ok()
}

/// OpenL3's int8 path (opt-in) stays close to float32 on audio it was not calibrated on,
/// really runs in int8, and is recalibrated when a weight changes in place.
#[test]
fn int8_openl3_stays_close_to_float32_and_follows_weight_changes() {
    if !int8_available() {
        return;
    }
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let openl3 = &model.net.openl3;
    let scene = &avscene::infer::bench::scene_stream("int8", 1, 3)[0];
    let frames = Tensor::from_slice(&scene.audio[..4 * 48000]).view([4, 48000]);
    let close = |float: &Tensor, int8: &Tensor| {
        let cosine = Tensor::cosine_similarity(float, int8, 1, 1e-8);
        let worst = cosine.min().double_value(&[]);
        assert!(worst > 0.995, "int8 vs float32 cosine {worst}");
        let diff = rel_diff(int8, float);
        assert!(diff > 1e-5, "int8 is not float32 in disguise: {diff:e}");
    };
    let set = |on: bool| openl3.set_int8(on).expect("int8 turns on on the CPU");
    around_a_weight_change(
        &model,
        || openl3.forward(&frames),
        set,
        || openl3.uses_int8(),
        close,
        |vars| {
            let mut w = vars["openl3.conv2d_3.weight"].shallow_clone();
            let _ = w.g_mul_scalar_(-1.0);
            let mut mean = vars["openl3.batch_normalization_6.running_mean"].shallow_clone();
            let _ = mean.g_add_scalar_(0.5);
        },
    );
}

/// An encoder's float32 and reduced-precision embeddings (`embed` computes them, `set`
/// turns the reduced path on and off, `on` says it stayed on), compared by `close`, then
/// again after `change` writes weights in place: the change shows in float32, and the
/// reduced path follows it.
fn around_a_weight_change(
    model: &Model,
    embed: impl Fn() -> Tensor,
    set: impl Fn(bool) -> bool,
    on: impl Fn() -> bool,
    close: impl Fn(&Tensor, &Tensor),
    change: impl FnOnce(&HashMap<String, Tensor>),
) {
    let both = || {
        assert!(!set(false));
        let float = tch::no_grad(&embed);
        assert!(set(true));
        let reduced = tch::no_grad(&embed);
        assert!(on(), "the reduced path stayed on (no fallback)");
        (float, reduced)
    };
    let (float, reduced) = both();
    close(&float, &reduced);
    tch::no_grad(|| change(&model.vs.variables()));
    let (changed_float, changed_reduced) = both();
    assert!(rel_diff(&changed_float, &float) > 1e-2, "the change shows");
    close(&changed_float, &changed_reduced);
}

/// A check that bfloat16 embeddings came back in float32, within a cosine of `worst` of
/// float32's, and really differ from them.
fn bf16_close_to_float32(worst: f64) -> impl Fn(&Tensor, &Tensor) {
    move |float: &Tensor, bf16: &Tensor| {
        assert_eq!(bf16.kind(), tch::Kind::Float, "back in float32");
        let cosine = Tensor::cosine_similarity(float, bf16, 1, 1e-8)
            .min()
            .double_value(&[]);
        assert!(cosine > worst, "bfloat16 vs float32 cosine {cosine}");
        let diff = rel_diff(bf16, float);
        assert!(diff > 1e-5, "bfloat16 is not float32 in disguise: {diff:e}");
    }
}

/// OpenL3's bfloat16 path (opt-in) where the CPU has bf16 instructions: within
/// bfloat16's rounding of float32, really in bfloat16, repacked when a weight changes in
/// place. On a CPU without them it refuses, saying so, and OpenL3 stays in float32.
#[test]
fn bf16_openl3_stays_close_to_float32_or_says_why_it_cannot() {
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let openl3 = &model.net.openl3;
    let scene = &avscene::infer::bench::scene_stream("bf16", 1, 3)[0];
    let frames = Tensor::from_slice(&scene.audio[..2 * 48000]).view([2, 48000]);
    if let Some(instructions) = avscene::support::cpu::bf16_instructions() {
        println!("this CPU has {instructions}: bfloat16 runs");
    } else {
        let e = openl3
            .set_bf16(true)
            .expect_err("no bf16 instructions here");
        assert!(e.to_string().contains("no bfloat16 instructions"), "{e}");
        assert!(!openl3.uses_bf16(), "stayed float32");
        return;
    }
    let close = bf16_close_to_float32(0.9999);
    let set = |on: bool| openl3.set_bf16(on).expect("bfloat16 turns on here");
    around_a_weight_change(
        &model,
        || openl3.forward(&frames),
        set,
        || openl3.uses_bf16(),
        close,
        |vars| {
            let mut w = vars["openl3.conv2d_5.weight"].shallow_clone();
            let _ = w.g_mul_scalar_(-1.0);
        },
    );
}

/// The ResNet image trunk's bfloat16 path (opt-in) where the CPU has bf16 instructions:
/// the image branch's embeddings within bfloat16's rounding of float32, really in
/// bfloat16, repacked when a weight changes in place, and off with the blocked layout.
/// On a CPU without them it refuses, saying so, and the trunk stays in float32.
#[test]
fn bf16_image_trunk_stays_close_to_float32_or_says_why_it_cannot() {
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let video = &model.net.video;
    if avscene::support::cpu::bf16_instructions().is_none() {
        let e = video.set_bf16(true).expect_err("no bf16 instructions here");
        assert!(e.to_string().contains("no bfloat16 instructions"), "{e}");
        assert!(!video.uses_bf16(), "stayed float32");
        return;
    }
    let images = input_tensor(&[2, 3, 224, 224], 0.2, 1.5, 0.013);
    let close = bf16_close_to_float32(0.999);
    let set = |on: bool| video.set_bf16(on).expect("bfloat16 turns on here");
    around_a_weight_change(
        &model,
        || video.forward_t(&images, false),
        set,
        || video.uses_bf16(),
        close,
        |vars| {
            let mut w = vars["video.resnet.layer3.1.conv2.weight"].shallow_clone();
            let _ = w.g_mul_scalar_(-1.0);
            let mut mean = vars["video.resnet.bn1.running_mean"].shallow_clone();
            let _ = mean.g_add_scalar_(0.5);
        },
    );
    // bfloat16 lives on the blocked layout: without it, the plain float32 path runs.
    assert!(video.set_bf16(true).unwrap());
    assert!(!video.set_blocked(false));
    assert!(!video.uses_bf16(), "off with the blocked layout");
    let e = video.set_bf16(true).expect_err("needs the blocked layout");
    assert!(e.to_string().contains("blocked layout"), "{e}");
    assert!(video.set_blocked(true));
}

/// The whole model with OpenL3 in int8, and in bfloat16 where the CPU has it, gives the
/// same labels as float32 on generated scenes, and nearly the same probabilities (what
/// `avscene bench --int8` / `--bf16` report).
#[test]
fn the_whole_model_in_reduced_precision_agrees_with_float32_on_generated_scenes() {
    use avscene::infer::Precision::{Bfloat16, Float32, Int8};
    let mut model = Model::fresh(ModelSpec::small(), Device::Cpu);
    // (OpenL3's precision, the image trunk's, the worst OpenL3 cosine allowed)
    let mut precisions = vec![];
    if int8_available() {
        precisions.push((Int8, Float32, 0.995));
    }
    if avscene::support::cpu::bf16_instructions().is_some() {
        precisions.push((Bfloat16, Float32, 0.9999));
        precisions.push((Bfloat16, Bfloat16, 0.9999));
    }
    for (precision, image, cosine) in precisions {
        let config = avscene::infer::InferenceConfig {
            openl3_precision: precision,
            image_precision: image,
            ..Default::default()
        };
        let (accuracy, back) = avscene::infer::bench::precision_accuracy(model, &config, 3, 2);
        model = back;
        let a = accuracy.expect("it runs here");
        assert_eq!(
            (a.precision, a.image_precision),
            (precision.name(), image.name())
        );
        assert_eq!((a.frames, a.image_frames, a.windows), (30, 30, 6));
        assert!(a.cosine_min > cosine, "{a:?}");
        // float32 against itself: equal but for the cosine's own rounding.
        let image_cosine = match image {
            Float32 => 0.999999..=1.000001,
            _ => 0.999..=0.999999,
        };
        assert!(image_cosine.contains(&a.image_cosine_min), "{a:?}");
        assert!(a.top1_agree + 1 >= a.windows, "{a:?}");
        assert!(a.max_probability_diff < 0.05, "{a:?}");
        let (openl3, video) = (&model.net.openl3, &model.net.video);
        assert!(
            !openl3.uses_int8() && !openl3.uses_bf16() && !video.uses_bf16(),
            "left in float32"
        );
    }
}
