//! `avscene fetch-weights`: the paper's pretrained encoders, downloaded (or taken from a
//! folder), checked and converted into the base model file `avscene train --init` starts
//! from — no Python.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::context::{CommandError, Result, print};
use crate::model::import::{Source, import_all};
use crate::model::pretrained::{FetchError, PUBLIC_WEIGHTS, Weights, download, verify};
use crate::model::{Model, ModelSpec};

/// Download the pretrained weights the paper starts from (torchvision's ImageNet
/// ResNet50 and torchopenl3's mel256/env/512), check their SHA-256, and write the base
/// model file to fine-tune from with `avscene train --init`.
#[derive(Debug, clap::Args)]
pub struct FetchWeightsArgs {
    /// The model file to write [default: base-model.safetensors in avscene's state
    /// folder: $STATE_DIRECTORY, /var/lib/avscene if writable, else ~/.local/share/avscene].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Take the checkpoints from this folder, under their published names
    /// (resnet50-0676ba61.pth, torchopenl3_mel256_env_512.pth.tar), instead of
    /// downloading them.
    #[arg(long, value_name = "DIR", conflicts_with = "mirror")]
    pub from: Option<PathBuf>,
    /// Download from this base URL instead of the publishers' (a mirror holding the
    /// same file names); the checksums are the same.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Expect this SHA-256 (all of it, or at least its first 8 hex digits) for NAME
    /// (resnet50 or openl3), instead of the published one; may be repeated. OpenL3's is
    /// not published: pin the one a first fetch printed.
    #[arg(long = "sha256", value_name = "NAME=HEX")]
    pub sha256: Vec<String>,
    /// Class labels, comma-separated, in output order [default: the ten TAU scenes];
    /// `avscene train --init` rebuilds the classifier for a dataset's own labels anyway.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: FetchWeightsArgs) -> Result {
    let input = CommandError::Input;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::support::state_dir().join("base-model.safetensors"));
    if out.exists() && !args.force {
        return Err(input(format!(
            "{} exists; pass --force to replace it",
            out.display()
        )));
    }
    let pins = pins(&args.sha256)?;
    let mut spec = ModelSpec::full();
    if let Some(classes) = args.classes.clone() {
        spec.classes = classes;
    }
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(input(format!("--classes: {}", problems.join("; "))));
    }
    let folder = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let downloads = folder.join("downloads");

    let mut text = String::new();
    let mut inputs: Vec<(PathBuf, Source)> = Vec::new();
    let mut fetched = serde_json::Map::new();
    for weights in &PUBLIC_WEIGHTS {
        let expected = pins
            .iter()
            .find(|(name, _)| name == weights.name)
            .map(|(_, hex)| hex.as_str())
            .or(weights.sha256);
        let (file, digest, from, expected) = match &args.from {
            Some(dir) => {
                // The main name, else an older name of the same weights (with its own
                // checksum, unless one was pinned).
                let older = weights
                    .also
                    .iter()
                    .map(|(name, hex)| (dir.join(name), *hex))
                    .find(|(file, _)| file.is_file());
                let (file, expected) = match older {
                    Some((file, hex)) if !dir.join(weights.file).is_file() => {
                        let pinned = pins.iter().any(|(name, _)| name == weights.name);
                        (file, if pinned { expected } else { Some(hex) })
                    }
                    _ => (dir.join(weights.file), expected),
                };
                if !file.is_file() {
                    return Err(input(
                        FetchError::Missing {
                            name: weights.name.into(),
                            wanted: weights.file.into(),
                            file,
                            dir: dir.clone(),
                        }
                        .to_string(),
                    ));
                }
                let digest = verify(&file, expected).map_err(|e| input(e.to_string()))?;
                let from = format!("file://{}", file.display());
                (file, digest, from, expected)
            }
            None => {
                let url = match &args.mirror {
                    Some(base) => format!("{}/{}", base.trim_end_matches('/'), weights.file),
                    None => weights.url.to_string(),
                };
                let (file, digest) = fetch(&url, &downloads, weights, expected)?;
                (file, digest, url, expected)
            }
        };
        let checked = match expected {
            Some(hex) => format!("matches {}…", &hex[..hex.len().min(16)]),
            None => "no published checksum to compare with; pin it with --sha256".into(),
        };
        let _ = writeln!(
            text,
            "{}: {} (sha256 {digest}: {checked})",
            weights.name,
            file.display()
        );
        fetched.insert(
            weights.name.into(),
            serde_json::json!({ "from": from, "sha256": digest }),
        );
        inputs.push((file, weights.source));
    }

    tracing::info!("building the full model and importing the weights");
    let mut model = Model::fresh(spec, tch::Device::Cpu);
    // A checkpoint that does not fit the architecture is the input's fault.
    let report = import_all(&mut model, &inputs).map_err(|e| input(e.to_string()))?;
    model.provenance.source = "fetch-weights".into();
    model
        .provenance
        .details
        .insert("fetched".into(), serde_json::Value::Object(fetched));
    model.id = "full-pretrained".into();
    std::fs::create_dir_all(&folder)
        .map_err(|e| CommandError::Failed(format!("{}: cannot create: {e}", folder.display())))?;
    model
        .save(&out)
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    for part in &report.untouched_parts {
        let _ = writeln!(text, "to train (avscene train): {part}");
    }
    let _ = writeln!(text, "wrote {}", out.display());
    let _ = writeln!(
        text,
        "next: avscene train --data <your dataset> --init {} --freeze-encoders --out <folder>",
        out.display()
    );
    print(text);
    Ok(())
}

/// `--sha256 NAME=HEX` pins, checked.
fn pins(given: &[String]) -> std::result::Result<Vec<(String, String)>, CommandError> {
    let names: Vec<&str> = PUBLIC_WEIGHTS.iter().map(|w| w.name).collect();
    given
        .iter()
        .map(|pin| {
            let bad = |why: String| CommandError::Input(format!("--sha256 {pin}: {why}"));
            let (name, hex) = pin
                .split_once('=')
                .ok_or_else(|| bad("expected NAME=HEX".into()))?;
            if !names.contains(&name) {
                return Err(bad(format!("unknown name (known: {})", names.join(", "))));
            }
            if hex.len() < 8 || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("8 to 64 hex digits".into()));
            }
            Ok((name.to_string(), hex.to_ascii_lowercase()))
        })
        .collect()
}

/// The checkpoint in `downloads/`: kept from an earlier run when it still checks out,
/// else downloaded there.
fn fetch(
    url: &str,
    downloads: &Path,
    weights: &Weights,
    expected: Option<&str>,
) -> std::result::Result<(PathBuf, String), CommandError> {
    let file = downloads.join(weights.file);
    if file.is_file() {
        match verify(&file, expected) {
            Ok(digest) => {
                tracing::info!("{}: already downloaded: {}", weights.name, file.display());
                return Ok((file, digest));
            }
            Err(e) => {
                tracing::warn!("{e}; downloading it again");
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    std::fs::create_dir_all(downloads).map_err(|e| {
        CommandError::Failed(format!("{}: cannot create: {e}", downloads.display()))
    })?;
    tracing::info!("{}: downloading {url}", weights.name);
    let digest = download(url, &file, expected).map_err(|e| CommandError::Failed(e.to_string()))?;
    Ok((file, digest))
}
