//! The status page in a real browser: headless Chromium (Debian's, installed by
//! scripts/setup.sh), driven over the DevTools protocol, loads the page of a running
//! daemon on the two demo streams. Each stream's label and probabilities appear and
//! update, the thumbnail is the demo's pattern, a recording started from the page writes
//! clips `dataset-info` reads and `avscene train --init` fine-tunes on while the daemon
//! runs on, and a write without the token, or from another origin, is refused. `AVSCENE_SCREENSHOTS=DIR` keeps a screenshot of the page (the README's).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Broker, avscene, http, text, wait_until};
use serde_json::{Value, json};

const CHROMIUM: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// Headless Chromium with one page, spoken to over the DevTools protocol.
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    /// The page's session (commands without one go to the browser).
    session: Option<String>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium; `None` (said, or skipped on purpose) where it is not installed.
    fn start() -> Option<Browser> {
        let Some(binary) = CHROMIUM.iter().find(|p| Path::new(p).exists()) else {
            common::cannot_run(
                "browser",
                "Chromium is not installed (scripts/setup.sh installs it)",
            );
            return None;
        };
        let profile = common::tempdir();
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // It says where its DevTools listen: ws://127.0.0.1:PORT/devtools/browser/…
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| Some(line[line.find("ws://127.0.0.1:")?..].trim().to_string()))
            .expect("chromium says where its DevTools listen");
        std::thread::spawn(move || log.for_each(drop));
        let (socket, _) = tungstenite::connect(url).expect("DevTools websocket");
        let mut browser = Browser {
            child,
            socket,
            session: None,
            next_id: 1,
            _profile: profile,
        };
        // A page of our own, spoken to through its session.
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().map(str::to_string);
        Some(browser)
    }

    /// One DevTools command and its result (events in between are passed over).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().expect("DevTools answers");
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluate `expression` until it is truthy, for up to `seconds`; the last value.
    fn eval_until(&mut self, seconds: f64, expression: &str) -> Value {
        let mut last = Value::Null;
        wait_until(seconds, || {
            last = self.eval(expression);
            !(last.is_null() || last == false || last == 0 || last == "")
        });
        last
    }

    fn open(&mut self, url: &str) {
        self.call("Page.enable", json!({}));
        self.call("Page.navigate", json!({ "url": url }));
    }

    fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo model setup.sh trains, else a small fresh one (the page does not care).
fn model_settings() -> String {
    match demo_model() {
        Some(demo) => format!("path = \"{}\"", demo.display()),
        None => "profile = \"small\"".to_string(),
    }
}

/// The demo model scripts/setup.sh trains, where it is there.
fn demo_model() -> Option<PathBuf> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/demo-model/best.safetensors");
    demo.is_file().then_some(demo)
}

/// A running daemon: killed on drop, its log printed when the test failed.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- the daemon's log ---\n{log}");
        }
    }
}

/// A daemon on the two demo streams with the page on `port`, a token and a dataset
/// folder of its own.
fn demo_daemon(dir: &Path, broker: u16, port: u16, token: &str) -> (Daemon, PathBuf) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let dataset = dir.join("dataset");
    let pipelines = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/test.toml");
    let config = dir.join("avscene.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nport = {broker}\n[model]\n{}\ndevice = \"cpu\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\
             [record]\ndataset = \"{}\"\n\
             [[stream]]\nname = \"lobby\"\npipeline = \"{pipelines}\"\nparams = {{ pattern = \"ball\", wave = \"pink-noise\" }}\n\
             [[stream]]\nname = \"platform\"\npipeline = \"{pipelines}\"\nparams = {{ pattern = \"smpte\", wave = \"sine\" }}\n",
            model_settings(),
            token_file.display(),
            dataset.display()
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Daemon { child, log }, dataset)
}

/// Colours of the frame the page shows for `stream`, read back from the browser:
/// counts of near-black, near-white, yellow, cyan and magenta pixels.
const FRAME_COLOURS: &str = r#"(async (stream) => {
  const img = document.querySelector(`[data-stream="${stream}"] img.frame`);
  if (!img || !img.complete || img.naturalWidth === 0) return null;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const n = { width: img.naturalWidth, height: img.naturalHeight, black: 0, white: 0, yellow: 0, cyan: 0, magenta: 0 };
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
    const hi = (v) => v > 150, lo = (v) => v < 60;
    if (lo(r) && lo(g) && lo(b)) n.black++;
    else if (r > 200 && g > 200 && b > 200) n.white++;
    else if (hi(r) && hi(g) && lo(b)) n.yellow++;
    else if (lo(r) && hi(g) && hi(b)) n.cyan++;
    else if (hi(r) && lo(g) && hi(b)) n.magenta++;
  }
  return n;
})"#;

#[test]
fn the_page_shows_both_demo_streams_live_and_records_labelled_clips_from_the_browser() {
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let dir = common::tempdir();
    let broker = Broker::start("allow_anonymous true");
    let port = common::free_port();
    let token = "page-test-token-0123456789";
    let (_daemon, dataset) = demo_daemon(dir.path(), broker.port, port, token);
    assert!(
        wait_until(60.0, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "the daemon listens on {port}"
    );
    browser.open(&format!("http://127.0.0.1:{port}/"));

    // Both streams get a card with a label and a bar per class that sum to about one.
    let cards = browser.eval_until(
        90.0,
        r#"(() => {
          const cards = [...document.querySelectorAll("article.card")];
          const labelled = cards.filter((c) => c.dataset.seq !== undefined);
          return labelled.length === 2 ? cards.map((c) => c.dataset.stream).join(",") : null;
        })()"#,
    );
    assert_eq!(
        cards, "lobby,platform",
        "both demo streams have a card with a label"
    );
    for stream in ["lobby", "platform"] {
        let card = browser.eval(&format!(
            r#"(() => {{
              const c = document.querySelector('[data-stream="{stream}"]');
              const bars = [...c.querySelectorAll(".bar")].map((b) => Number(b.dataset.p));
              return {{ label: c.querySelector(".label").textContent, state: c.dataset.state,
                        seq: Number(c.dataset.seq), bars: bars.length,
                        sum: bars.reduce((a, b) => a + b, 0) }};
            }})()"#
        ));
        let classes: Value =
            serde_json::from_str(&http(port, "GET", "/api/status", &[], "").1).unwrap();
        let classes = classes["classes"].as_array().unwrap().len() as u64;
        assert_eq!(card["bars"], classes, "{stream}: a bar per class: {card}");
        assert!(
            (card["sum"].as_f64().unwrap() - 1.0).abs() < 0.01,
            "{stream}: {card}"
        );
        assert_eq!(card["state"], "live", "{stream}: {card}");
        assert!(
            !card["label"].as_str().unwrap().is_empty(),
            "{stream}: {card}"
        );
        // And it updates without a reload: the window number moves on.
        let seq = card["seq"].as_u64().unwrap();
        let later = browser.eval_until(
            15.0,
            &format!(
                "Number(document.querySelector('[data-stream=\"{stream}\"]').dataset.seq) > {seq}"
            ),
        );
        assert_eq!(later, true, "{stream}: the card updates past window {seq}");
    }

    // The thumbnails are what the model saw of the demo patterns: 224×224, colour bars
    // (yellow, cyan, magenta) on "platform", a white ball on black on "lobby".
    let bars = browser.eval_until(20.0, &format!("{FRAME_COLOURS}('platform')"));
    assert_eq!(
        (bars["width"].as_u64(), bars["height"].as_u64()),
        (Some(224), Some(224)),
        "{bars}"
    );
    for colour in ["yellow", "cyan", "magenta"] {
        assert!(
            bars[colour].as_u64().unwrap() > 2000,
            "platform shows SMPTE bars: {bars}"
        );
    }
    let ball = browser.eval_until(20.0, &format!("{FRAME_COLOURS}('lobby')"));
    let total = 224 * 224;
    assert!(
        ball["black"].as_u64().unwrap() > total / 2,
        "lobby: a black field: {ball}"
    );
    assert!(
        ball["white"].as_u64().unwrap() > 100,
        "lobby: a white ball: {ball}"
    );

    // A write without the token is refused, with the reason shown on the page.
    browser.eval(
        r#"(() => {
          const f = document.querySelector('[data-stream="platform"] form.record');
          f.querySelector('input[name=label]').value = "bars";
          f.querySelector('input[name=minutes]').value = "0.34";
          f.requestSubmit();
        })()"#,
    );
    let said = browser.eval_until(
        10.0,
        r#"(() => { const s = document.querySelector('[data-stream="platform"] .said');
                    return s.classList.contains("error") ? s.textContent : null; })()"#,
    );
    assert!(said.as_str().unwrap().contains("token"), "{said}");
    assert_eq!(
        browser.eval("document.querySelector('#token').hidden"),
        false,
        "the page asks for the token"
    );

    // With the token (typed into the page, as a user would), both streams record.
    browser.eval(&format!(
        r#"(() => {{
          document.querySelector('#token-input').value = "{token}";
          document.querySelector('#token-save').click();
          for (const [stream, label] of [["platform", "bars"], ["lobby", "hall"]]) {{
            const f = document.querySelector(`[data-stream="${{stream}}"] form.record`);
            f.querySelector('.said').classList.remove("error");
            f.querySelector('input[name=label]').value = label;
            f.querySelector('input[name=minutes]').value = "0.34";
            f.requestSubmit();
          }}
        }})()"#
    ));
    let recording = browser.eval_until(
        10.0,
        r#"[...document.querySelectorAll("form.record")].every((f) => f.dataset.state === "recording")"#,
    );
    assert_eq!(recording, true, "both streams record");
    let done = browser.eval_until(
        60.0,
        r#"(() => { const f = [...document.querySelectorAll("form.record")];
                    return f.every((f) => f.dataset.state === "done") ? f.map((f) => f.dataset.clips).join(",") : null; })()"#,
    );
    assert_eq!(done, "2,2", "two clips each, progress shown on the page");
    if let Some(shots) = std::env::var_os("AVSCENE_SCREENSHOTS") {
        // Let the timeline load before the picture.
        browser.eval("loadTimelines()");
        browser.screenshot(&Path::new(&shots).join("status-page.png"));
    }

    // The clips are a dataset `dataset-info` reads: two labels, two clips each.
    let info = avscene(&["dataset-info", dataset.to_str().unwrap(), "--json"]);
    let v: Value =
        serde_json::from_slice(&info.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&info)));
    assert_eq!(v["layout"], "folder-per-label", "{v}");
    assert_eq!(v["labels"]["bars"]["clips"], 2, "{v}");
    assert_eq!(v["labels"]["hall"]["clips"], 2, "{v}");
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");

    // And fine-tune on them while the service runs on: the classifier is rebuilt for the
    // two new labels, everything else starts from the model the daemon serves.
    let out = dir.path().join("tuned");
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        dataset.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--freeze-encoders".into(),
        "--epochs".into(),
        "2".into(),
        "--batch".into(),
        "2".into(),
        "--device".into(),
        "cpu".into(),
    ];
    args.extend(match demo_model() {
        Some(demo) => ["--init".to_string(), demo.display().to_string()],
        None => ["--profile".to_string(), "small".to_string()],
    });
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = avscene(&args);
    assert!(run.status.success(), "{}", text(&run));
    let tuned = avscene::model::Model::load(&out.join("best.safetensors"), tch::Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&run)));
    assert_eq!(tuned.spec.classes, ["bars", "hall"]);
    if demo_model().is_some() {
        assert!(text(&run).contains("classifier rebuilt"), "{}", text(&run));
    }

    // Another origin may not write even with the token; a wrong token is refused.
    let body = r#"{"label": "evil", "minutes": 1}"#;
    let path = "/api/streams/lobby/record";
    let bearer = format!("Bearer {token}");
    let json_type = ("Content-Type", "application/json");
    let (status, answer) = http(
        port,
        "POST",
        path,
        &[
            json_type,
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        body,
    );
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = http(
        port,
        "POST",
        path,
        &[
            json_type,
            ("Authorization", "Bearer wrong-token-0123456789"),
        ],
        body,
    );
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = http(
        port,
        "POST",
        path,
        &[("Content-Type", "text/plain"), ("Authorization", &bearer)],
        body,
    );
    assert_eq!(
        status, 415,
        "a form post cannot start a recording: {answer}"
    );
    assert!(
        !dataset.join("evil").exists(),
        "nothing recorded for a refused write"
    );
}
