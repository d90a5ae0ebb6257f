//! PyTorch checkpoints read without Python: files written by a real `torch.save`
//! (tests/fixtures/pth/make.py, PyTorch 2.13) in the zip format, the legacy format,
//! pickle protocol 4 and inside a training wrapper with DataParallel names; every tensor
//! is an arange, so its values are known here. A pickled module and broken files are
//! refused with the file named.

mod common;

use std::path::{Path, PathBuf};

use avscene::model::pth::read_state_dict;
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

fn arange(n: i64, kind: Kind) -> Tensor {
    Tensor::arange(n, (kind, tch::Device::Cpu))
}

/// The state make.py saved, by name.
fn expected() -> Vec<(&'static str, Tensor)> {
    vec![
        ("conv.weight", arange(24, Kind::Float).reshape([2, 3, 4])),
        ("transposed", arange(12, Kind::Float).reshape([3, 4]).tr()),
        ("half", arange(6, Kind::Half)),
        ("bf16", arange(6, Kind::BFloat16)),
        ("double", arange(5, Kind::Double)),
        ("shared.a", arange(10, Kind::Float).slice(0, 2, 5, 1)),
        ("shared.b", arange(10, Kind::Float).slice(0, 5, 10, 1)),
        ("bn.num_batches_tracked", Tensor::from(7i64)),
        ("param", arange(4, Kind::Float)),
    ]
}

fn check(file: &str, prefix: &str) {
    let tensors = read_state_dict(&fixture(file)).unwrap_or_else(|e| panic!("{e}"));
    let expected = expected();
    assert_eq!(tensors.len(), expected.len(), "{file}");
    for ((name, tensor), (want_name, want)) in tensors.iter().zip(&expected) {
        assert_eq!(
            name,
            &format!("{prefix}{want_name}"),
            "{file}: order and names"
        );
        assert_eq!(tensor.kind(), want.kind(), "{file}: {name}");
        assert_eq!(tensor.size(), want.size(), "{file}: {name}");
        assert!(tensor.equal(want), "{file}: {name} = {tensor}");
    }
}

#[test]
fn the_zip_format_reads_exactly() {
    check("zip.pth", "");
}

#[test]
fn the_legacy_format_reads_exactly() {
    check("legacy.pth", "");
}

#[test]
fn pickle_protocol_4_reads_exactly() {
    check("protocol4.pth", "");
}

#[test]
fn a_training_checkpoint_is_read_through_its_state_dict() {
    check("wrapped.pth", "module.");
}

#[test]
fn a_pickled_module_and_broken_files_are_refused_by_name() {
    let err = read_state_dict(&fixture("module.pth"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("module.pth") && err.contains("torch.nn.modules.linear.Linear"),
        "{err}"
    );
    let dir = common::tempdir();
    for (name, cut) in [("zip.pth", 1200), ("legacy.pth", 900)] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let short = dir.path().join(format!("short-{name}"));
        std::fs::write(&short, &bytes[..cut]).unwrap();
        let err = read_state_dict(&short).unwrap_err().to_string();
        assert!(err.contains(&format!("short-{name}")), "{err}");
    }
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "not a checkpoint").unwrap();
    let err = read_state_dict(&text).unwrap_err().to_string();
    assert!(err.contains("neither the zip nor the legacy"), "{err}");
}
