//! `avscene fetch-weights` against a web server on 127.0.0.1 serving generated
//! checkpoints under the published names, in the formats the publishers use (torchvision's
//! ResNet50 in the legacy `torch.save` format, torchopenl3's in the zip format): a wrong
//! checksum, a truncated download and a file that is no checkpoint are refused with
//! nothing half-written left; a good fetch writes a base model whose encoders equal the
//! checkpoints; `--from DIR` does the same offline. (tests/pth.rs proves the reader on
//! files a real PyTorch wrote; the writer here only makes big files of the right shape.)

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use avscene::model::pretrained::{PUBLIC_WEIGHTS, sha256_of};
use avscene::model::{Model, ModelSpec};
use common::{avscene, tempdir, text};
use tch::{Device, Kind, Tensor};

/// A minimal pickle writer: an `OrderedDict` of float32 tensors as `torch.save` pickles
/// it (protocol 2), each tensor its own storage named by its index.
fn pickle_state_dict(tensors: &[(String, Tensor)], legacy: bool) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    let global = |p: &mut Vec<u8>, module: &str, name: &str| {
        p.push(b'c');
        p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    };
    let string = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, i: i64| {
        p.push(b'J');
        p.extend_from_slice(&(i as i32).to_le_bytes());
    };
    global(&mut p, "collections", "OrderedDict");
    p.extend_from_slice(b")R(");
    for (index, (name, tensor)) in tensors.iter().enumerate() {
        string(&mut p, name);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(b'(');
        // The storage, as a persistent id.
        p.push(b'(');
        string(&mut p, "storage");
        global(&mut p, "torch", "FloatStorage");
        string(&mut p, &index.to_string());
        string(&mut p, "cpu");
        int(&mut p, tensor.numel() as i64);
        if legacy {
            p.push(b'N');
        }
        p.extend_from_slice(b"tQ");
        int(&mut p, 0);
        for dims in [tensor.size(), tensor.stride()] {
            p.push(b'(');
            dims.iter().for_each(|&d| int(&mut p, d));
            p.push(b't');
        }
        p.push(0x89);
        global(&mut p, "collections", "OrderedDict");
        p.extend_from_slice(b")RtR");
    }
    p.extend_from_slice(b"u.");
    p
}

fn float_bytes(t: &Tensor) -> Vec<u8> {
    let values: Vec<f32> = t.contiguous().view([-1]).try_into().unwrap();
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `torch.save(state, f, _use_new_zipfile_serialization=False)`.
fn save_legacy(path: &Path, tensors: &[(String, Tensor)]) {
    let mut out = Vec::new();
    // The magic number, the protocol version, the system info.
    out.extend_from_slice(&[
        0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ]);
    out.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
    out.extend_from_slice(&[0x80, 2, b'}', b'.']);
    out.extend(pickle_state_dict(tensors, true));
    // The storage keys, then each storage: its element count and its bytes.
    out.extend_from_slice(&[0x80, 2, b'(']);
    for index in 0..tensors.len() {
        let key = index.to_string();
        out.push(b'X');
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out.extend_from_slice(b"l.");
    for (_, tensor) in tensors {
        out.extend_from_slice(&(tensor.numel() as u64).to_le_bytes());
        out.extend(float_bytes(tensor));
    }
    std::fs::write(path, out).unwrap();
}

/// `torch.save(state, f)`: the zip format.
fn save_zip(path: &Path, tensors: &[(String, Tensor)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pickle_state_dict(tensors, false)).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    for (index, (_, tensor)) in tensors.iter().enumerate() {
        zip.start_file(format!("archive/data/{index}"), stored)
            .unwrap();
        zip.write_all(&float_bytes(tensor)).unwrap();
    }
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

/// How the server answers one path.
#[derive(Clone)]
enum Answer {
    Whole(Arc<Vec<u8>>),
    /// Announces the whole length, sends half, closes.
    Truncated(Arc<Vec<u8>>),
}

/// A web server on 127.0.0.1: paths → answers (404 otherwise), counting requests.
struct Server {
    port: u16,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (a, h) = (answers.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (a, h) = (a.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    reader.read_line(&mut request).unwrap();
                    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let answer = a.lock().unwrap().get(&path).cloned();
                    let _ = match answer {
                        Some(Answer::Whole(body)) => write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .and_then(|_| stream.write_all(&body)),
                        Some(Answer::Truncated(body)) => write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .and_then(|_| stream.write_all(&body[..body.len() / 2])),
                        None => write!(
                            stream,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                    };
                });
            }
        });
        Server {
            port,
            answers,
            hits,
        }
    }

    fn serve(&self, file: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(format!("/{file}"), answer);
    }

    fn hits(&self, file: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(&format!("/{file}"))
            .copied()
            .unwrap_or(0)
    }

    fn mirror(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Generated checkpoints under the published names, cut from a fresh full model: the
/// ResNet50 with torchvision's ImageNet `fc`, OpenL3 as torchopenl3 names it.
fn checkpoints(dir: &Path) -> (PathBuf, PathBuf, Vec<(String, Tensor)>) {
    tch::manual_seed(5);
    let source = Model::fresh(ModelSpec::full(), Device::Cpu);
    let mut resnet: Vec<(String, Tensor)> = Vec::new();
    let mut openl3: Vec<(String, Tensor)> = Vec::new();
    let mut expected = Vec::new();
    for (name, var) in source.vs.variables() {
        let value = var.detach() + 0.125;
        if let Some(bare) = name.strip_prefix("video.resnet.") {
            resnet.push((bare.to_string(), value.shallow_clone()));
        } else if let Some(bare) = name.strip_prefix("openl3.") {
            openl3.push((bare.to_string(), value.shallow_clone()));
        } else {
            continue;
        }
        expected.push((name, value));
    }
    resnet.push((
        "fc.weight".into(),
        Tensor::zeros([1000, 2048], (Kind::Float, Device::Cpu)),
    ));
    resnet.push((
        "fc.bias".into(),
        Tensor::zeros([1000], (Kind::Float, Device::Cpu)),
    ));
    let resnet_path = dir.join(PUBLIC_WEIGHTS[0].file);
    let openl3_path = dir.join(PUBLIC_WEIGHTS[1].file);
    save_legacy(&resnet_path, &resnet);
    save_zip(&openl3_path, &openl3);
    (resnet_path, openl3_path, expected)
}

fn pin(name: &str, file: &Path) -> String {
    format!("{name}={}", sha256_of(file).unwrap())
}

/// What is in a folder (none of it `.partial`).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn fetched_weights_are_checked_and_become_the_base_model() {
    let dir = tempdir();
    let published = dir.path().join("published");
    std::fs::create_dir_all(&published).unwrap();
    let (resnet, openl3, expected) = checkpoints(&published);
    let (resnet_file, openl3_file) = (PUBLIC_WEIGHTS[0].file, PUBLIC_WEIGHTS[1].file);
    let bytes = |p: &Path| Arc::new(std::fs::read(p).unwrap());
    let server = Server::start();
    let state = dir.path().join("state");
    let out = state.join("base-model.safetensors");
    let downloads = state.join("downloads");
    let fetch = |extra: &[&str]| {
        let mirror = server.mirror();
        let mut args = vec![
            "fetch-weights",
            "--out",
            out.to_str().unwrap(),
            "--mirror",
            &mirror,
        ];
        args.extend(extra);
        avscene(&args)
    };
    let (resnet_pin, openl3_pin) = (pin("resnet50", &resnet), pin("openl3", &openl3));

    // Not served at all: the HTTP status is named.
    let run = fetch(&["--sha256", &resnet_pin]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(text(&run).contains("HTTP 404"), "{}", text(&run));

    // A file that is not the published one: its SHA-256 says so; nothing is kept.
    server.serve(resnet_file, Answer::Whole(bytes(&resnet)));
    let run = fetch(&["--sha256", "resnet50=deadbeef", "--sha256", &openl3_pin]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("SHA-256") && text(&run).contains("deadbeef"),
        "{}",
        text(&run)
    );
    assert!(listing(&downloads).is_empty(), "{:?}", listing(&downloads));
    assert!(!out.exists());

    // A download cut short: said, and nothing kept.
    server.serve(resnet_file, Answer::Truncated(bytes(&resnet)));
    let run = fetch(&["--sha256", &resnet_pin, "--sha256", &openl3_pin]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(text(&run).contains("truncated"), "{}", text(&run));
    assert!(listing(&downloads).is_empty(), "{:?}", listing(&downloads));

    // A download that is whole and has the pinned digest but is no checkpoint: the
    // reader refuses it by name and no model is written.
    let junk = Arc::new(b"<html>rate limited</html>".to_vec());
    let junk_digest = {
        let p = dir.path().join("junk");
        std::fs::write(&p, junk.as_slice()).unwrap();
        pin("openl3", &p)
    };
    server.serve(resnet_file, Answer::Whole(bytes(&resnet)));
    server.serve(openl3_file, Answer::Whole(junk));
    let run = fetch(&["--sha256", &resnet_pin, "--sha256", &junk_digest]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains(openl3_file) && text(&run).contains("not a PyTorch checkpoint"),
        "{}",
        text(&run)
    );
    assert!(!out.exists());

    // The real thing: the ResNet50 kept from the last run is not downloaded again; the
    // OpenL3 file kept no longer matches its pin and is.
    server.serve(openl3_file, Answer::Whole(bytes(&openl3)));
    let resnet_hits = server.hits(resnet_file);
    let run = fetch(&["--sha256", &resnet_pin, "--sha256", &openl3_pin]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        server.hits(resnet_file),
        resnet_hits,
        "kept, not fetched again"
    );
    assert!(
        text(&run).contains("wrote") && text(&run).contains("--init"),
        "{}",
        text(&run)
    );
    let model = Model::load(&out, Device::Cpu).unwrap();
    assert_eq!(model.provenance.source, "fetch-weights");
    let fetched = &model.provenance.details["fetched"];
    assert_eq!(
        fetched["resnet50"]["sha256"],
        resnet_pin.split_once('=').unwrap().1
    );
    let variables = model.vs.variables();
    for (name, value) in &expected {
        assert!(
            variables[name].equal(value),
            "{name} differs from the checkpoint"
        );
    }
    assert_eq!(listing(&downloads), [resnet_file, openl3_file]);

    // --from: the same files copied by hand, no network; an existing model needs --force.
    drop(server);
    let from = |extra: &[&str]| {
        let mut args = vec![
            "fetch-weights",
            "--out",
            out.to_str().unwrap(),
            "--from",
            published.to_str().unwrap(),
            "--sha256",
            &resnet_pin,
            "--sha256",
            &openl3_pin,
        ];
        args.extend(extra);
        avscene(&args)
    };
    let run = from(&[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(text(&run).contains("--force"), "{}", text(&run));
    let run = from(&["--force"]);
    assert!(run.status.success(), "{}", text(&run));
    // The ResNet50 under the name torchvision served it by in the authors' day: taken,
    // and checked against that name's own checksum unless one is pinned.
    let older = dir.path().join("older");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::copy(&resnet, older.join("resnet50-19c8e357.pth")).unwrap();
    std::fs::copy(&openl3, older.join(openl3_file)).unwrap();
    let older_out = dir.path().join("older.safetensors");
    let from_older = |pins: &[&str]| {
        let mut args = vec![
            "fetch-weights",
            "--out",
            older_out.to_str().unwrap(),
            "--from",
            older.to_str().unwrap(),
        ];
        args.extend(pins);
        avscene(&args)
    };
    let run = from_older(&["--sha256", &openl3_pin]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("resnet50-19c8e357.pth") && text(&run).contains("19c8e357…"),
        "{}",
        text(&run)
    );
    let run = from_older(&["--sha256", &resnet_pin, "--sha256", &openl3_pin]);
    assert!(run.status.success(), "{}", text(&run));
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = avscene(&[
        "fetch-weights",
        "--out",
        dir.path().join("m.safetensors").to_str().unwrap(),
        "--from",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains(resnet_file), "{}", text(&missing));
}

#[test]
fn bad_pins_are_refused_before_anything_is_fetched() {
    let dir = tempdir();
    let out = dir.path().join("m.safetensors");
    for (pin, said) in [
        ("resnet=0676ba61", "unknown name"),
        ("resnet50=xyz", "hex digits"),
        ("resnet50", "NAME=HEX"),
    ] {
        let run = avscene(&[
            "fetch-weights",
            "--out",
            out.to_str().unwrap(),
            "--mirror",
            "http://127.0.0.1:9",
            "--sha256",
            pin,
        ]);
        assert_eq!(run.status.code(), Some(2), "{}", text(&run));
        assert!(text(&run).contains(said), "{pin}: {}", text(&run));
    }
}
