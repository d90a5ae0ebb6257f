//! `avscene import-weights`: torchvision- and torchopenl3-named checkpoints become a model
//! file whose tensors equal the inputs; bad checkpoints are refused with the tensor named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use avscene::model::{Model, ModelSpec};
use common::{avscene, tempdir};
use tch::{Device, Kind, Tensor};

/// Checkpoints named as the public ones, cut from a fresh model of `spec` (with the
/// extras real files carry: torchvision's `fc`, BatchNorm step counters).
fn public_checkpoints(dir: &Path, spec: ModelSpec) -> (Model, PathBuf, PathBuf) {
    tch::manual_seed(3);
    let source = Model::fresh(spec, Device::Cpu);
    let vars = source.vs.variables();
    let mut resnet: Vec<(String, Tensor)> = vars
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix("video.resnet.")
                .map(|bare| (bare.to_string(), t.detach() + 0.25))
        })
        .collect();
    resnet.push((
        "fc.weight".into(),
        Tensor::zeros([1000, 8], (Kind::Float, Device::Cpu)),
    ));
    resnet.push((
        "bn1.num_batches_tracked".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    let openl3: Vec<(String, Tensor)> = vars
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix("openl3.")
                .map(|bare| (bare.to_string(), t.detach() - 0.5))
        })
        .collect();
    let resnet_path = dir.join("resnet50.safetensors");
    let openl3_path = dir.join("openl3.safetensors");
    Tensor::write_safetensors(&resnet, &resnet_path).unwrap();
    Tensor::write_safetensors(&openl3, &openl3_path).unwrap();
    (source, resnet_path, openl3_path)
}

#[test]
fn imported_tensors_equal_the_checkpoints() {
    let dir = tempdir();
    let (source, resnet, openl3) = public_checkpoints(dir.path(), ModelSpec::full());
    let out = dir.path().join("model.safetensors");
    let run = avscene(&[
        "import-weights",
        "--resnet50",
        resnet.to_str().unwrap(),
        "--openl3",
        openl3.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("left as initialised") && stdout.contains("audio branch"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("image backbone") && !stdout.contains("OpenL3 (openl3)"),
        "{stdout}"
    );

    let model = Model::load(&out, Device::Cpu).unwrap();
    assert_eq!(model.provenance.source, "import-weights");
    assert!(model.provenance.details.contains_key("imported_resnet"));
    let imported = model.vs.variables();
    let original = source.vs.variables();
    for (name, value) in &original {
        let expected = if name.starts_with("video.resnet.") {
            value + 0.25
        } else if name.starts_with("openl3.") {
            value - 0.5
        } else {
            continue;
        };
        assert!(
            imported[name].equal(&expected),
            "{name} was not imported exactly"
        );
    }
}

#[test]
fn a_whole_dual_stream_checkpoint_imports_under_the_authors_names() {
    let dir = tempdir();
    let source = Model::fresh(ModelSpec::small(), Device::Cpu);
    let named: Vec<(String, Tensor)> = source
        .vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("openl3."))
        .map(|(n, t)| (format!("module.{n}"), t.detach() * 2.0))
        // The authors' ResNet keeps torchvision's ImageNet head, which the model lacks.
        .chain([
            (
                "video.resnet.fc.weight".to_string(),
                Tensor::ones([1000, 128], (tch::Kind::Float, Device::Cpu)),
            ),
            (
                "video.resnet.fc.bias".to_string(),
                Tensor::zeros([1000], (tch::Kind::Float, Device::Cpu)),
            ),
        ])
        .collect();
    let ckpt = dir.path().join("mixed_model.safetensors");
    Tensor::write_safetensors(&named, &ckpt).unwrap();
    let out = dir.path().join("model.safetensors");
    let run = avscene(&[
        "import-weights",
        "--profile",
        "small",
        "--dual-stream",
        ckpt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        said.contains("2 left out, unused by the model") && said.contains("video.resnet.fc.weight"),
        "{said}"
    );
    let model = Model::load(&out, Device::Cpu).unwrap();
    let w = &model.vs.variables()["classifier.1.weight"];
    assert!(w.equal(&(&source.vs.variables()["classifier.1.weight"] * 2.0)));
}

#[test]
fn bad_checkpoints_are_refused_and_nothing_is_written() {
    let dir = tempdir();
    let (_, resnet, _) = public_checkpoints(dir.path(), ModelSpec::small());
    let out = dir.path().join("model.safetensors");
    let out_s = out.to_str().unwrap();

    // The small profile's backbone is not a ResNet50: conv1 has 16 channels, not 64.
    let wrong_profile = avscene(&[
        "import-weights",
        "--resnet50",
        resnet.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    let err = String::from_utf8_lossy(&wrong_profile.stderr);
    // A checkpoint that does not fit is bad input (exit 2), named with the tensor.
    assert_eq!(wrong_profile.status.code(), Some(2), "{err}");
    assert!(
        err.contains("resnet50.safetensors")
            && err.contains("video.resnet.")
            && err.contains("needs"),
        "{err}"
    );
    assert!(!out.exists());

    let unknown = dir.path().join("unknown.safetensors");
    Tensor::write_safetensors(
        &[(
            "layer5.0.conv1.weight",
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        )],
        &unknown,
    )
    .unwrap();
    let run = avscene(&[
        "import-weights",
        "--profile",
        "small",
        "--resnet50",
        unknown.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("layer5.0.conv1.weight") && err.contains("does not have"),
        "{err}"
    );

    let pth = dir.path().join("resnet50.pth");
    std::fs::write(&pth, b"PK\x03\x04 a zip-format torch.save file").unwrap();
    let run = avscene(&[
        "import-weights",
        "--resnet50",
        pth.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("resnet50.pth: not a PyTorch checkpoint") && err.contains("truncated"),
        "{err}"
    );

    let none = avscene(&["import-weights", "--out", out_s]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("at least one of"));

    let bad_classes = avscene(&[
        "import-weights",
        "--profile",
        "small",
        "--resnet50",
        resnet.to_str().unwrap(),
        "--classes",
        "park",
        "--out",
        out_s,
    ]);
    assert!(String::from_utf8_lossy(&bad_classes.stderr).contains("at least 2 classes"));
    assert!(!out.exists());

    std::fs::write(&out, b"keep me").unwrap();
    let exists = avscene(&[
        "import-weights",
        "--profile",
        "small",
        "--resnet50",
        resnet.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(String::from_utf8_lossy(&exists.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
}

/// A Python with torch and safetensors, if this machine has one.
fn torch_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("AVSCENE_TEST_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/torch-venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn real_pytorch_checkpoints_import_exactly() {
    let Some(python) = torch_python() else {
        common::cannot_run(
            "python-torch",
            "no Python with torch (set AVSCENE_TEST_PYTHON or run scripts/setup.sh --cuda)",
        );
        return;
    };
    let dir = tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/check_import.py");
    let run = Command::new(python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_avscene"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("tensors identical"), "{stdout}");
}
