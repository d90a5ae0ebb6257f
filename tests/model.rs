//! The model through real libtorch on CPU: shapes at every stage, per-frame encoders that
//! give the same result alone or in a batch (what the embedding cache relies on), a tiny
//! training run that overfits, and model files — round trips and bad files.

mod common;

use avscene::features::audio;
use avscene::model::{Model, ModelFileError, ModelSpec, TAU_CLASSES};
use common::{avscene, input_tensor, rel_diff, tempdir};
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

fn eval_no_grad<T>(f: impl FnOnce() -> T) -> T {
    tch::no_grad(f)
}

#[test]
fn full_model_shapes_at_every_stage_batch_1_and_3() {
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    assert_eq!(model.spec.classes, TAU_CLASSES);
    let net = &model.net;
    eval_no_grad(|| {
        for b in [1i64, 3] {
            let emb = Tensor::randn([b, 96, 512], (Kind::Float, Device::Cpu));
            let stages = net.audio_net.stages_t(&emb, false);
            let shapes: Vec<Vec<i64>> = stages.iter().map(|t| t.size()).collect();
            assert_eq!(
                shapes,
                vec![
                    vec![b, 96, 512],
                    vec![b, 64, 31, 126],
                    vec![b, 128, 10, 40],
                    vec![b, 256, 10, 12],
                    vec![b, 256, 10, 3]
                ]
            );
            assert_eq!(net.audio_net.forward_t(&emb, false).size(), [b, 10, 256]);
            let images = Tensor::randn([b, 10, 3, 224, 224], (Kind::Float, Device::Cpu));
            let image_emb = net.embed_images(&images.view([b * 10, 3, 224, 224]), false);
            assert_eq!(image_emb.size(), [b * 10, 256]);
            let logits = net.head_t(&emb, &image_emb.view([b, 10, 256]), false);
            assert_eq!(logits.size(), [b, 10]);
            assert_eq!(net.forward_t(&emb, &images, false).size(), [b, 10]);
        }
        let frames = input_tensor(&[2, 48000], 0.4, 0.3, 0.0575);
        assert_eq!(net.openl3.spectrogram(&frames).size(), [2, 256, 199]);
        assert_eq!(net.embed_audio_frames(&frames).size(), [2, 512]);
    });
}

#[test]
fn a_ten_second_clip_is_framed_as_openl3_frames_it() {
    // openl3 0.3.1 with center=True: half a frame of zeros in front, the tail padded to
    // whole hops, 1 s frames every 0.1 s — the reference, written out here.
    let clip: Vec<f32> = (0..480_000).map(|i| (i as f32 * 0.001).sin()).collect();
    let padded = Tensor::from_slice(&clip).constant_pad_nd([24_000, 0]);
    let reference = padded.unfold(0, 48_000, 4_800);
    assert_eq!(reference.size(), [96, 48_000]);
    // avscene's framing of a window whose lead is silence (the start of a recording).
    let lead = vec![0.0f32; avscene::features::LEAD_SAMPLES];
    let ours = audio::window_frames(&lead, &clip);
    assert!(
        Tensor::from_slice(&ours)
            .view([96, 48_000])
            .equal(&reference)
    );
    // Frame 0 is centred on t = 0, frame 10 on t = 1 s.
    assert!(ours[..24_000].iter().all(|&s| s == 0.0));
    assert_eq!(ours[24_000], clip[0]);
    assert_eq!(ours[10 * 48_000 + 24_000], clip[48_000]);
}

#[test]
fn fresh_layers_start_as_pytorch_initialises_them() {
    // PyTorch's defaults: nn.Linear / nn.Conv*d weights and biases U(±1/√fan_in),
    // BatchNorm and LayerNorm γ = 1, β = 0; torchvision's ResNet convolutions
    // kaiming_normal_(fan_out, relu). Checked on the bounds and the spread of each tensor.
    tch::manual_seed(11);
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let vars = model.vs.variables();
    let std = |t: &Tensor| t.std(true).double_value(&[]);
    let mut checked = 0;
    for (name, var) in &vars {
        if name.contains("speclayer") || name.contains("running_") {
            continue;
        }
        let size = var.size();
        let (layer, kind) = name.rsplit_once('.').unwrap();
        let weight = &vars[&format!("{layer}.weight")];
        let norm = weight.dim() == 1;
        let max = var.abs().max().double_value(&[]);
        if norm {
            let expected = if kind == "weight" { 1.0 } else { 0.0 };
            let off = (var - expected).abs().max().double_value(&[]);
            assert_eq!(off, 0.0, "{name}: a norm's {kind} must be {expected}");
        } else if name.starts_with("video.resnet.") {
            let fan_out = size[0] * size[2..].iter().product::<i64>();
            let expected = (2.0 / fan_out as f64).sqrt();
            let s = std(var);
            assert!(
                (s / expected - 1.0).abs() < 0.1,
                "{name}: std {s:e}, torchvision {expected:e}"
            );
        } else {
            let w = weight.size();
            let fan_in = w[1] * w[2..].iter().product::<i64>();
            let bound = 1.0 / (fan_in as f64).sqrt();
            assert!(
                max <= bound * (1.0 + 1e-6),
                "{name}: |x| up to {max:e} > 1/√{fan_in}"
            );
            if var.numel() >= 2000 {
                let s = std(var);
                let expected = bound / 3f64.sqrt();
                assert!(
                    (s / expected - 1.0).abs() < 0.1,
                    "{name}: std {s:e}, PyTorch {expected:e}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 200, "{checked} tensors checked");
}

#[test]
fn per_frame_encoders_give_the_same_result_alone_and_in_a_batch() {
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let net = &model.net;
    eval_no_grad(|| {
        // 10 frames: a cached hop's, run as two chunks of 5.
        let frames = Tensor::randn([10, 48000], (Kind::Float, Device::Cpu)) * 0.1;
        let batch = net.embed_audio_frames(&frames);
        for i in [0, 4, 5, 9] {
            let alone = net.embed_audio_frames(&frames.narrow(0, i, 1));
            let d = rel_diff(&alone, &batch.narrow(0, i, 1));
            assert!(d < 1e-5, "OpenL3 frame {i}: {d:e}");
        }
        let images = Tensor::randn([3, 3, 224, 224], (Kind::Float, Device::Cpu));
        let batch = net.embed_images(&images, false);
        for i in 0..3 {
            let alone = net.embed_images(&images.narrow(0, i, 1), false);
            let d = rel_diff(&alone, &batch.narrow(0, i, 1));
            assert!(d < 1e-5, "image {i}: {d:e}");
        }
    });
}

#[test]
fn cached_embeddings_give_the_from_scratch_result() {
    let model = Model::fresh(ModelSpec::small(), Device::Cpu);
    let net = &model.net;
    eval_no_grad(|| {
        let frames = Tensor::randn([1, 96, 48000], (Kind::Float, Device::Cpu)) * 0.1;
        let images = Tensor::randn([1, 10, 3, 224, 224], (Kind::Float, Device::Cpu));
        let scratch = net.classify_from_scratch(&frames, &images);
        // Encode frame by frame, as the cache does, then run the head.
        let audio: Vec<Tensor> = (0..96)
            .map(|i| net.embed_audio_frames(&frames.get(0).narrow(0, i, 1)))
            .collect();
        let pictures: Vec<Tensor> = (0..10)
            .map(|i| net.embed_images(&images.get(0).narrow(0, i, 1), false))
            .collect();
        let cached = net.head_t(
            &Tensor::cat(&audio, 0).unsqueeze(0),
            &Tensor::cat(&pictures, 0).unsqueeze(0),
            false,
        );
        let d = rel_diff(&cached, &scratch);
        assert!(d < 1e-5, "{d:e}");
    });
}

#[test]
fn a_tiny_training_run_overfits_and_reaches_every_trainable_part() {
    tch::manual_seed(7);
    let model = Model::fresh(ModelSpec::small(), Device::Cpu);
    let mut opt = nn::Adam::default().build(&model.vs, 1e-3).unwrap();
    let emb = Tensor::randn([4, 96, 512], (Kind::Float, Device::Cpu));
    let images = Tensor::randn([4, 10, 3, 224, 224], (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 3, 7, 9]);
    let mut first_loss = None;
    let mut loss_value = f64::MAX;
    for step in 0..60 {
        let loss = model
            .net
            .forward_t(&emb, &images, true)
            .cross_entropy_for_logits(&labels);
        opt.zero_grad();
        loss.backward();
        if step == 0 {
            for (name, var) in model.vs.variables() {
                if !var.requires_grad() || name.starts_with("openl3.") {
                    continue; // OpenL3 is frozen: its embeddings are precomputed
                }
                let grad = var.grad();
                assert!(
                    grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "no gradient reaches {name}"
                );
            }
        }
        opt.step();
        loss_value = loss.double_value(&[]);
        first_loss.get_or_insert(loss_value);
        if loss_value < 0.02 {
            break;
        }
    }
    let first = first_loss.unwrap();
    // (Eval-mode predictions are not asserted: after a few steps the batch norms'
    // running statistics still lag the batch statistics.)
    assert!(loss_value < 0.05, "loss went from {first} to {loss_value}");
}

#[test]
fn save_then_load_is_bit_identical() {
    let dir = tempdir();
    for spec in [ModelSpec::small(), ModelSpec::full()] {
        let model = Model::fresh(spec.clone(), Device::Cpu);
        let path = dir.path().join(format!("{}.safetensors", spec.profile));
        model.save(&path).unwrap();
        let loaded = Model::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.spec, spec);
        assert_eq!(loaded.provenance.source, "random-init");
        let original = model.vs.variables();
        let restored = loaded.vs.variables();
        assert_eq!(original.len(), restored.len());
        for (name, t) in &original {
            assert!(t.equal(&restored[name]), "{name} changed in the round trip");
        }
        assert!(loaded.id.starts_with(&spec.profile));
    }
}

/// A small model file to damage.
fn small_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("model.safetensors");
    Model::fresh(ModelSpec::small(), Device::Cpu)
        .save(&path)
        .unwrap();
    path
}

/// Rewrite a model file's tensors and metadata through `edit`.
fn rewrite(
    path: &std::path::Path,
    edit: impl FnOnce(&mut Vec<(String, Tensor)>, &mut std::collections::HashMap<String, String>),
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap_or_default();
    let mut tensors = Tensor::read_safetensors(path).unwrap();
    edit(&mut tensors, &mut meta);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let v = Vec::<f32>::try_from(&t.contiguous().view([-1])).unwrap();
            (
                n.clone(),
                t.size().iter().map(|&d| d as usize).collect(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

fn load_error(path: &std::path::Path) -> String {
    match Model::load(path, Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let dir = tempdir();
    let path = small_file(dir.path());
    rewrite(&path, |tensors, _| {
        let t = tensors
            .iter_mut()
            .find(|(n, _)| n == "classifier.1.weight")
            .unwrap();
        t.1 = Tensor::zeros([5, 128], (Kind::Float, Device::Cpu));
    });
    let e = load_error(&path);
    assert!(
        e.contains("classifier.1.weight") && e.contains("[5, 128]") && e.contains("[10, 128]"),
        "{e}"
    );
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_missing_or_unexpected_tensor_is_named() {
    let dir = tempdir();
    let path = small_file(dir.path());
    rewrite(&path, |tensors, _| {
        tensors.retain(|(n, _)| n != "video.resnet.layer2.0.bn1.running_var")
    });
    let e = load_error(&path);
    assert!(
        e.contains("video.resnet.layer2.0.bn1.running_var") && e.contains("missing"),
        "{e}"
    );

    let path = small_file(dir.path());
    rewrite(&path, |tensors, _| {
        tensors.push((
            "video.resnet.fc.weight".into(),
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        ))
    });
    let e = load_error(&path);
    assert!(
        e.contains("video.resnet.fc.weight") && e.contains("not part of this architecture"),
        "{e}"
    );
}

#[test]
fn corrupt_truncated_and_foreign_files_get_clear_errors() {
    let dir = tempdir();
    let path = small_file(dir.path());
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_error(&truncated).contains("not a safetensors model file"));

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"PK\x03\x04 this is a zip, say a PyTorch .pth").unwrap();
    assert!(load_error(&garbage).contains("not a safetensors model file"));

    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_error(&empty).contains("not a safetensors model file"));

    let missing = dir.path().join("nope.safetensors");
    let e = load_error(&missing);
    assert!(
        e.contains("nope.safetensors") && e.contains("cannot read"),
        "{e}"
    );

    // A plain safetensors file (e.g. converted torchvision weights) is not a model file.
    let plain = dir.path().join("plain.safetensors");
    std::fs::copy(&path, &plain).unwrap();
    rewrite(&plain, |_, meta| meta.clear());
    let e = load_error(&plain);
    assert!(
        e.contains("not an avscene model") && e.contains("import-weights"),
        "{e}"
    );

    let future = dir.path().join("future.safetensors");
    std::fs::copy(&path, &future).unwrap();
    rewrite(&future, |_, meta| {
        meta.insert("format_version".into(), "99".into());
    });
    assert!(load_error(&future).contains("version 99"));

    let bad_spec = dir.path().join("badspec.safetensors");
    std::fs::copy(&path, &bad_spec).unwrap();
    rewrite(&bad_spec, |_, meta| {
        meta.insert("spec".into(), "{\"dim\": \"wide\"}".into());
    });
    let e = load_error(&bad_spec);
    assert!(e.contains("metadata `spec`"), "{e}");

    let one_class = dir.path().join("oneclass.safetensors");
    std::fs::copy(&path, &one_class).unwrap();
    rewrite(&one_class, |_, meta| {
        let mut spec: serde_json::Value = serde_json::from_str(&meta["spec"]).unwrap();
        spec["classes"] = serde_json::json!(["park"]);
        meta.insert("spec".into(), spec.to_string());
    });
    let e = load_error(&one_class);
    assert!(e.contains("at least 2 classes"), "{e}");

    assert!(
        Model::load(&path, Device::Cpu).is_ok(),
        "the undamaged file still loads"
    );
    assert!(matches!(
        Model::load(&missing, Device::Cpu),
        Err(ModelFileError::Read { .. })
    ));
}

#[test]
fn labels_come_from_the_file() {
    let dir = tempdir();
    let mut spec = ModelSpec::small();
    spec.classes = vec!["porch".into(), "street".into(), "kitchen".into()];
    let path = dir.path().join("mine.safetensors");
    Model::fresh(spec.clone(), Device::Cpu).save(&path).unwrap();
    let loaded = Model::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.spec.classes, spec.classes);
    let out = tch::no_grad(|| {
        loaded.net.head_t(
            &Tensor::randn([2, 96, 512], (Kind::Float, Device::Cpu)),
            &Tensor::randn([2, 10, 64], (Kind::Float, Device::Cpu)),
            false,
        )
    });
    assert_eq!(out.size(), [2, 3]);
}

#[test]
fn model_info_describes_fresh_and_saved_models() {
    let out = avscene(&["model", "info", "--profile", "small", "--device", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("total without OpenL3") && text.contains("street_traffic"),
        "{text}"
    );

    let dir = tempdir();
    let file = dir.path().join("m.safetensors");
    Model::fresh(ModelSpec::small(), Device::Cpu)
        .save(&file)
        .unwrap();
    let out = avscene(&["model", "info", "--model", file.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["spec"]["profile"], "small");
    assert_eq!(info["output"][1], 10);
    let p = &info["parameters"];
    let sum = p["audio_branch"].as_i64().unwrap()
        + p["image_branch"].as_i64().unwrap()
        + p["fusion"].as_i64().unwrap();
    assert_eq!(p["total_without_openl3"].as_i64().unwrap(), sum);

    // A model file named on the command line that cannot be used is bad input: exit 2.
    let out = avscene(&["model", "info", "--model", "/nonexistent/m.safetensors"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/m.safetensors"));
}

#[test]
fn full_model_parameter_counts_match_the_architecture() {
    // ResNet50 without its ImageNet classifier has 23,508,032 parameters; the image
    // branch adds Linear(2048→256) and BatchNorm1d(256).
    let model = Model::fresh(ModelSpec::full(), Device::Cpu);
    let counts = model.parameter_counts();
    assert_eq!(counts.image_branch, 23_508_032 + 2048 * 256 + 256 + 2 * 256);
    // OpenL3 mel256: BN(1) + 7 convolutions with their BNs + the 512→512 embedding layer.
    let convs = [
        (1, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 512),
    ];
    let openl3: i64 = 2
        + convs
            .iter()
            .map(|(i, o)| i * o * 9 + o + 2 * o)
            .sum::<i64>()
        + 512 * 512 * 9
        + 512;
    assert_eq!(counts.openl3, openl3);
}
