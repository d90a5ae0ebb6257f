//! Publishing to a real mosquitto: the payload of every topic, `online` / `stopped` /
//! Last Will `offline` on the status topic, and Home Assistant discovery (re-sent when
//! Home Assistant says `online`).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use avscene::infer::SceneResult;
use avscene::model::TAU_CLASSES;
use avscene::publish::{MqttConfig, Publisher};
use common::{Broker, Subscriber, retained_when, wait_until};

fn config(port: u16) -> MqttConfig {
    MqttConfig {
        port,
        client_id: format!("avscene-test-{port}"),
        ..Default::default()
    }
}

fn classes() -> Vec<String> {
    TAU_CLASSES.iter().map(|c| c.to_string()).collect()
}

fn result(stream: &str, seq: u64, top: usize) -> SceneResult {
    let mut probabilities = vec![0.02f32; 10];
    probabilities[top] = 1.0 - 0.02 * 9.0;
    let end = SystemTime::now();
    SceneResult {
        stream: Arc::from(stream),
        seq,
        start: end - Duration::from_secs(10),
        end,
        label: TAU_CLASSES[top].to_string(),
        confidence: probabilities[top],
        probabilities,
        queue_wait: Duration::from_millis(3),
        compute: Duration::from_millis(40),
        batch: 1,
        model_id: "full-test".into(),
        filled_samples: 0,
        filled_frames: 1,
        frame: None,
        audio_dbfs: -20.0,
    }
}

/// A publisher for the one stream "porch".
fn porch_publisher(config: &MqttConfig) -> Publisher {
    Publisher::start(config, &["porch".into()], &classes(), "full-test").unwrap()
}

/// A subscriber, subscribed before this returns, for `count` messages on `topic`.
fn subscribe(port: u16, topic: &str, count: usize) -> Subscriber {
    Subscriber::start(port, topic, count)
}

fn lines(subscriber: Subscriber) -> Vec<(String, String)> {
    subscriber.messages()
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

fn connected(publisher: &Publisher) -> bool {
    publisher
        .stats
        .connected
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn scene_state_and_status_payloads() {
    let broker = Broker::start("allow_anonymous true");
    let sub = subscribe(broker.port, "avscene/#", 7);
    let publisher = porch_publisher(&config(broker.port));
    publisher.publish(result("porch", 0, 4));
    publisher.publish(result("porch", 1, 4));
    publisher.publish(result("porch", 2, 2));
    let got = lines(sub);
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "avscene/status",
            "avscene/porch/availability",
            "avscene/porch/scene",
            "avscene/porch/scene",
            "avscene/porch/scene",
            // Queued before the connection: the retained state and attributes of the
            // first label were superseded by the new label's (only the newest waits).
            "avscene/porch/state",
            "avscene/porch/attributes",
        ],
        "{got:?}"
    );
    let attributes: serde_json::Value = serde_json::from_str(&got[6].1).unwrap();
    assert_eq!(
        attributes.as_object().unwrap().len(),
        10,
        "every class: {attributes}"
    );
    assert!(attributes["metro"].as_f64().unwrap() > 0.8, "{attributes}");
    assert_eq!(got[0].1, "online");
    assert_eq!(got[1].1, "offline", "no source has said it delivers");
    assert_eq!(got[5].1, "metro", "state: the newest label");
    for (_, payload) in got.iter().filter(|(t, _)| t.ends_with("/scene")).take(2) {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(v["stream"], "porch");
        assert_eq!(v["label"], "park");
        assert!(v["confidence"].as_f64().unwrap() > 0.8);
        let probs = v["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 10);
        let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        let start = humantime::parse_rfc3339(v["start"].as_str().unwrap()).unwrap();
        let end = humantime::parse_rfc3339(v["end"].as_str().unwrap()).unwrap();
        assert_eq!(end.duration_since(start).unwrap().as_secs(), 10);
        for field in ["latency_ms", "queue_wait_ms", "compute_ms", "seq"] {
            assert!(v[field].is_number(), "{field}");
        }
        assert_eq!(v["model"], "full-test");
        assert_eq!(v["filled"]["frames"], 1);
    }
    publisher.stop();
    let status = lines(subscribe(broker.port, "avscene/status", 1));
    assert_eq!(
        status,
        [("avscene/status".to_string(), "stopped".to_string())],
        "retained `stopped` after a clean stop"
    );
}

#[test]
fn a_vanished_publisher_leaves_offline_by_last_will() {
    let broker = Broker::start("allow_anonymous true");
    let publisher = porch_publisher(&config(broker.port));
    let online = lines(subscribe(broker.port, "avscene/status", 1));
    assert_eq!(online[0].1, "online");
    publisher.abort();
    let status = retained_when(broker.port, "avscene/status", 5.0, |s| s == "offline");
    assert_eq!(status, "offline");
}

#[test]
fn home_assistant_discovery_is_retained_and_resent_when_home_assistant_returns() {
    let broker = Broker::start("allow_anonymous true");
    let publisher = porch_publisher(&config(broker.port));
    let topic = "homeassistant/sensor/avscene_porch/scene/config";
    let sub = subscribe(broker.port, topic, 2);
    // Home Assistant (re)starts and announces itself.
    let announce = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-t",
            "homeassistant/status",
            "-m",
            "online",
        ])
        .status()
        .unwrap();
    assert!(announce.success());
    let got = lines(sub);
    assert_eq!(
        got.len(),
        2,
        "the retained config, then the re-sent one: {got:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(v["state_topic"], "avscene/porch/state");
    assert_eq!(v["json_attributes_topic"], "avscene/porch/attributes");
    assert_eq!(
        v["default_entity_id"], "sensor.avscene_porch_scene",
        "HA ≥ 2025.10"
    );
    assert_eq!(v["object_id"], "avscene_porch_scene", "older HA");
    assert_eq!(v["availability"][0]["topic"], "avscene/status");
    assert_eq!(v["availability"][1]["topic"], "avscene/porch/availability");
    assert_eq!(v["availability_mode"], "all", "the daemon and the stream");
    assert_eq!(v["unique_id"], "avscene_porch_scene");
    assert_eq!(v["device"]["identifiers"][0], "avscene_porch");
    publisher.stop();
}

#[test]
fn a_stream_is_available_once_its_source_delivers_and_it_has_a_label_of_this_run() {
    let mut broker = Broker::start("allow_anonymous true");
    // What an earlier run left: the stream online, and its label.
    for (topic, payload) in [
        ("avscene/porch/availability", "online"),
        ("avscene/porch/state", "bus"),
    ] {
        let port = broker.port.to_string();
        let published = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                topic,
                "-m",
                payload,
                "-r",
                "-q",
                "1",
            ])
            .status()
            .unwrap();
        assert!(published.success());
    }
    let publisher = porch_publisher(&config(broker.port));
    let topic = "avscene/porch/availability";
    let retained = |port: u16, want: &'static str| retained_when(port, topic, 10.0, |p| p == want);
    // Connected: the earlier run's label is not current.
    assert_eq!(retained(broker.port, "offline"), "offline");
    publisher.set_available("porch", true);
    publisher.publish(result("porch", 0, 4));
    assert_eq!(
        retained(broker.port, "online"),
        "online",
        "delivering, with a label"
    );
    // The source fails: unavailable, and back only with a new label.
    publisher.set_available("porch", false);
    assert_eq!(retained(broker.port, "offline"), "offline");
    publisher.set_available("porch", true);
    assert_eq!(common::first_message(broker.port, topic, 1), "offline");
    publisher.publish(result("porch", 1, 4));
    assert_eq!(retained(broker.port, "online"), "online");
    // A broker without persistence restarts with nothing retained: said again.
    broker.stop();
    assert!(wait_until(10.0, || !connected(&publisher)));
    broker.restart();
    assert_eq!(retained(broker.port, "online"), "online");
    publisher.remove_stream("porch");
    assert_eq!(retained(broker.port, ""), "", "cleared with the stream");
    publisher.stop();
}

/// A broker with persistence (a consumer's session and its queued messages survive a
/// restart) and a consumer with a persistent QoS 1 session on the porch's scene topic.
struct Persistent {
    broker: Broker,
    _store: tempfile::TempDir,
}

impl Persistent {
    fn start() -> Persistent {
        let store = Broker::shared_dir();
        let broker = Broker::start(&format!(
            "allow_anonymous true\nuser root\npersistence true\npersistence_location {}/",
            store.path().display()
        ));
        let consumer = Persistent {
            broker,
            _store: store,
        };
        consumer.collect(1, 1); // subscribes: the session exists from now on
        consumer
    }

    /// The `seq` of the scene messages the consumer's session holds: up to `count`,
    /// waiting up to `seconds`.
    fn collect(&self, count: usize, seconds: u64) -> Vec<u64> {
        let port = self.broker.port.to_string();
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-i",
                "consumer",
                "-c",
                "-q",
                "1",
            ])
            .args(["-t", "avscene/porch/scene"])
            .args(["-C", &count.to_string(), "-W", &seconds.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }
}

/// Every seq from 0 to `last` arrived, in order; a message sent again after a reconnect
/// (at-least-once) may come twice, next to itself or after what followed it.
fn assert_all_arrived(seqs: &[u64], last: u64) {
    let mut unique = seqs.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique,
        (0..=last).collect::<Vec<_>>(),
        "every message: {seqs:?}"
    );
    let mut highest = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        // In order, except that what went out again repeats from where it was lost.
        assert!(
            seq >= highest || seqs[..i].contains(&seq),
            "out of order at {i}: {seqs:?}"
        );
        highest = highest.max(seq);
    }
}

fn settled(publisher: &Publisher) -> bool {
    connected(publisher)
        && load(&publisher.stats.outbox) == 0
        && load(&publisher.stats.in_flight) == 0
}

#[test]
fn messages_produced_while_the_broker_restarts_arrive_in_order_afterwards() {
    let mut store = Persistent::start();
    let publisher = porch_publisher(&config(store.broker.port));
    assert!(wait_until(10.0, || connected(&publisher)));
    let mut seq = 0;
    // Three restarts; each time a burst goes out just before the broker stops (some of
    // it unacknowledged when it goes) and more while it is away.
    for _ in 0..3 {
        for _ in 0..5 {
            publisher.publish(result("porch", seq, 1));
            seq += 1;
        }
        store.broker.stop();
        assert!(
            wait_until(10.0, || !connected(&publisher)),
            "the broker's end was not seen"
        );
        for _ in 0..5 {
            publisher.publish(result("porch", seq, 1));
            seq += 1;
        }
        assert!(
            wait_until(10.0, || load(&publisher.stats.outbox) >= 5),
            "waiting in the outbox"
        );
        store.broker.restart();
        assert!(
            wait_until(40.0, || settled(&publisher)),
            "the publisher did not reconnect and deliver"
        );
    }
    let seqs = store.collect(100, 3);
    assert_all_arrived(&seqs, seq - 1);
    assert_eq!(load(&publisher.stats.dropped), 0);
    publisher.stop();
}

#[test]
fn a_frozen_broker_loses_nothing_and_is_given_up_on_within_one_and_a_half_keep_alives() {
    let store = Persistent::start();
    let mut cfg = config(store.broker.port);
    cfg.keep_alive_s = 5;
    cfg.connect_timeout_s = 2;
    let publisher = porch_publisher(&cfg);
    assert!(wait_until(10.0, || connected(&publisher)));
    let watcher = subscribe(store.broker.port, "avscene/porch/scene", 1);
    publisher.publish(result("porch", 0, 1));
    assert_eq!(lines(watcher).len(), 1);
    // Frozen, the broker keeps its connections open and answers nothing: what goes out
    // meanwhile is written to a connection that will never acknowledge it.
    store.broker.freeze();
    let mut seq = 1;
    let gave_up = wait_until(12.0, || {
        publisher.publish(result("porch", seq, 1));
        seq += 1;
        std::thread::sleep(Duration::from_millis(200));
        !connected(&publisher)
    });
    for _ in 0..5 {
        publisher.publish(result("porch", seq, 1));
        seq += 1;
    }
    store.broker.thaw();
    assert!(gave_up, "a silent broker was not given up on");
    assert!(
        wait_until(40.0, || settled(&publisher)),
        "the publisher did not reconnect and deliver"
    );
    let seqs = store.collect(200, 3);
    assert_all_arrived(&seqs, seq - 1);
    assert_eq!(load(&publisher.stats.dropped), 0);
    publisher.stop();
}

#[test]
fn a_broker_that_never_answers_is_tried_on_the_backoff_whatever_arrives() {
    // Accepts TCP connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(stream);
        }
    });
    let mut cfg = config(port);
    cfg.connect_timeout_s = 1;
    let publisher = porch_publisher(&cfg);
    // Results keep arriving (10 a second) while attempts time out: 1 s each, then 0.5,
    // 1 and 2 s of backoff — 3 attempts in the first 6 s, not one per result.
    let started = std::time::Instant::now();
    let mut seq = 0;
    while started.elapsed() < Duration::from_secs(6) {
        publisher.publish(result("porch", seq, 1));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let attempts = load(&accepted);
    assert!(
        (2..=4).contains(&attempts),
        "{attempts} connection attempts in 6 s"
    );
    assert!(!connected(&publisher));
    assert_eq!(
        load(&publisher.stats.outbox),
        seq + 2,
        "all wait in the outbox: the scenes, the state and the attributes"
    );
    publisher.abort();
}

#[test]
fn beyond_the_outbox_bound_the_oldest_are_dropped_and_counted() {
    let mut broker = Broker::start("allow_anonymous true");
    let mut cfg = config(broker.port);
    cfg.outbox_capacity = 4;
    let publisher = porch_publisher(&cfg);
    assert!(wait_until(10.0, || connected(&publisher)));
    broker.stop();
    // Wait until the publisher has seen the broker go (a loaded machine takes a moment):
    // before that, messages still go to the connection instead of the outbox.
    assert!(wait_until(10.0, || !connected(&publisher)));
    // 10 results: 10 scene messages + 1 state + 1 attributes message, into an outbox of 4.
    for seq in 0..10 {
        publisher.publish(result("porch", seq, 2));
    }
    let stats = &publisher.stats;
    assert!(
        wait_until(10.0, || load(&stats.dropped) == 12 - 4),
        "dropped {}",
        load(&stats.dropped)
    );
    assert_eq!(load(&stats.outbox), 4);
    publisher.abort();
}

#[test]
fn a_removed_stream_disappears_from_home_assistant() {
    let broker = Broker::start("allow_anonymous true");
    let publisher = Publisher::start(
        &config(broker.port),
        &["porch".into(), "yard".into()],
        &classes(),
        "full-test",
    )
    .unwrap();
    publisher.publish(result("yard", 0, 3));
    let retained = |topic: &str, expected: &dyn Fn(&str) -> bool| {
        retained_when(broker.port, topic, 10.0, expected)
    };
    let yard = "homeassistant/sensor/avscene_yard/scene/config";
    assert!(retained(yard, &|p| p.contains("avscene_yard_scene")).contains("avscene_yard_scene"));
    assert_eq!(
        retained("avscene/yard/state", &|p| !p.is_empty()),
        "metro_station"
    );
    publisher.remove_stream("yard");
    assert_eq!(retained(yard, &str::is_empty), "", "config cleared");
    assert_eq!(retained("avscene/yard/state", &str::is_empty), "");
    let porch = "homeassistant/sensor/avscene_porch/scene/config";
    assert!(retained(porch, &|p| !p.is_empty()).contains("avscene_porch_scene"));
    // A result of the removed stream still in flight does not bring its state back: once
    // a later message (shed's config) is out, yard's state is still clear.
    publisher.publish(result("yard", 1, 5));

    // A stream added on reload is described and published.
    publisher.add_stream("shed");
    publisher.publish(result("shed", 0, 3));
    let shed = "homeassistant/sensor/avscene_shed/scene/config";
    assert!(retained(shed, &|p| !p.is_empty()).contains("avscene_shed_scene"));
    assert_eq!(
        retained("avscene/shed/state", &|p| !p.is_empty()),
        "metro_station"
    );
    assert_eq!(
        common::first_message(broker.port, "avscene/yard/state", 1),
        ""
    );
    publisher.stop();
}
