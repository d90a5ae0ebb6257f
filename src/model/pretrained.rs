//! The public pretrained weights the paper's model starts from, fetched from where
//! their authors publish them and checked before anything reads them: torchvision's
//! ImageNet ResNet50 (`IMAGENET1K_V1`, which the authors' `resnet50(pretrained=True)`
//! loaded) and torchopenl3's mel256 / env / 512 audio network. A download goes to a
//! `.partial` file beside its destination and becomes the file only when it is whole
//! and its SHA-256 is right; whatever fails, nothing half-written is left.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::import::Source;

/// One public checkpoint.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Its short name (`--sha256 resnet50=…`).
    pub name: &'static str,
    /// The file name the publisher gives it.
    pub file: &'static str,
    pub url: &'static str,
    /// The SHA-256 it must have: all 64 hex digits, or the leading ones a publisher
    /// states (torchvision names each file after the first 8 of its SHA-256, which
    /// `torch.hub` checks). `None`: not published; the digest is shown and recorded.
    pub sha256: Option<&'static str>,
    /// Other names the same weights were published under, with their checksums: taken
    /// by `--from DIR` when the main one is not there.
    pub also: &'static [(&'static str, &'static str)],
    pub source: Source,
}

/// What `avscene fetch-weights` fetches, in order.
pub const PUBLIC_WEIGHTS: [Weights; 2] = [
    Weights {
        name: "resnet50",
        file: "resnet50-0676ba61.pth",
        url: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        sha256: Some("0676ba61"),
        // What torchvision served for IMAGENET1K_V1 before 0.13 (the authors' day).
        also: &[("resnet50-19c8e357.pth", "19c8e357")],
        source: Source::Resnet,
    },
    Weights {
        name: "openl3",
        file: "torchopenl3_mel256_env_512.pth.tar",
        url: "https://github.com/torchopenl3/torchopenl3-models/raw/master/torchopenl3_mel256_env_512.pth.tar",
        sha256: None,
        also: &[],
        source: Source::OpenL3,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Download { url: String, reason: String },
    #[error("{url}: truncated: {got} of {expected} bytes arrived")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{}: SHA-256 {found} is not the expected {expected}… (a corrupt or different file)", .file.display())]
    Checksum {
        file: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: not there (expected {name}'s {wanted} in {})", .file.display(), .dir.display())]
    Missing {
        name: String,
        wanted: String,
        file: PathBuf,
        dir: PathBuf,
    },
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// The SHA-256 of a file, in hex.
pub fn sha256_of(file: &Path) -> Result<String, FetchError> {
    let io = |source| FetchError::Io {
        file: file.to_path_buf(),
        source,
    };
    let mut reader = std::fs::File::open(file).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `digest` is what `expected` (a whole digest or its start) asks for.
fn matches(digest: &str, expected: Option<&str>) -> bool {
    expected.is_none_or(|e| !e.is_empty() && digest.starts_with(&e.to_ascii_lowercase()))
}

/// `file`'s `digest` if it is what `expected` asks for, else the error that says so.
fn checked(file: &Path, digest: String, expected: Option<&str>) -> Result<String, FetchError> {
    if !matches(&digest, expected) {
        return Err(FetchError::Checksum {
            file: file.to_path_buf(),
            expected: expected.unwrap_or_default().to_string(),
            found: digest,
        });
    }
    Ok(digest)
}

/// Check a file against `expected`; its digest.
pub fn verify(file: &Path, expected: Option<&str>) -> Result<String, FetchError> {
    checked(file, sha256_of(file)?, expected)
}

/// Download `url` to `dest` with a progress bar, checking the length the server
/// announced and `expected`; returns the digest. On any failure the partial file is
/// removed and `dest` is untouched.
pub fn download(url: &str, dest: &Path, expected: Option<&str>) -> Result<String, FetchError> {
    let partial = dest.with_file_name(format!(
        "{}.partial",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ));
    let result = download_to(url, &partial, expected);
    match result {
        Ok(digest) => {
            std::fs::rename(&partial, dest).map_err(|source| FetchError::Io {
                file: dest.to_path_buf(),
                source,
            })?;
            Ok(digest)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

fn download_to(url: &str, partial: &Path, expected: Option<&str>) -> Result<String, FetchError> {
    let failed = |reason: String| FetchError::Download {
        url: url.to_string(),
        reason,
    };
    crate::support::tls_provider();
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout_read(std::time::Duration::from_secs(60))
        .user_agent(concat!("avscene/", env!("CARGO_PKG_VERSION")))
        .build();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => failed(format!("HTTP {code} {}", r.status_text())),
        ureq::Error::Transport(t) => failed(t.to_string()),
    })?;
    let length: Option<u64> = response
        .header("Content-Length")
        .and_then(|l| l.parse().ok());
    let io = |source| FetchError::Io {
        file: partial.to_path_buf(),
        source,
    };
    let mut out = std::fs::File::create(partial).map_err(io)?;
    let bar = crate::support::download_progress(length, url);
    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A connection cut short: the length check below says so plainly.
            Err(e) if length.is_some() => {
                tracing::debug!("{url}: {e}");
                break;
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io)?;
        got += n as u64;
        bar.set_position(got);
    }
    bar.finish_and_clear();
    out.sync_all().map_err(io)?;
    if let Some(expected) = length.filter(|&l| l != got) {
        return Err(FetchError::Truncated {
            url: url.to_string(),
            got,
            expected,
        });
    }
    checked(partial, hex(&hasher.finalize()), expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_matches_its_published_start_or_all_of_it() {
        let d = format!("0676ba61{}", "0".repeat(56));
        let d = d.as_str();
        assert!(matches(d, Some("0676ba61")));
        assert!(matches(d, Some(&d.to_ascii_uppercase())));
        assert!(matches(d, None));
        assert!(!matches(d, Some("19c8e357")));
        assert!(!matches(d, Some("")));
    }
}
