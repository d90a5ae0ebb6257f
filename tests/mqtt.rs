//! MQTT against a real mosquitto on 127.0.0.1: `avscene mqtt-test` round-trips a message,
//! and wrong credentials or a missing broker give the exact reason.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Broker;

fn config(dir: &Path, mqtt: &str) -> std::path::PathBuf {
    common::demo_config(dir, &format!("[mqtt]\n{mqtt}"))
}

fn mqtt_test(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["mqtt-test", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn mqtt_test_round_trips_a_message() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let out = mqtt_test(&config(
        dir.path(),
        &format!("host = \"127.0.0.1\"\nport = {}", broker.port),
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("MQTT OK") && stdout.contains("avscene/mqtt-test/"),
        "{stdout}"
    );
}

#[test]
fn credentials_from_the_password_file_work_and_wrong_ones_are_named() {
    let files = Broker::shared_dir();
    let passwords = files.path().join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["porch", "s3cret"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644)).unwrap();
    let broker = Broker::start(&format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    ));
    let dir = common::tempdir();
    let secret = dir.path().join("mqtt-password");

    std::fs::write(&secret, "s3cret\n").unwrap();
    let good = format!(
        "port = {}\nusername = \"porch\"\npassword_file = \"{}\"",
        broker.port,
        secret.display()
    );
    let out = mqtt_test(&config(dir.path(), &good));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("as 'porch'"));

    std::fs::write(&secret, "wrong\n").unwrap();
    let out = mqtt_test(&config(dir.path(), &good));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the credentials of user 'porch'")
            && stderr.contains("mqtt.password_file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the password must never be printed: {stderr}"
    );

    let anonymous = format!("port = {}", broker.port);
    let out = mqtt_test(&config(dir.path(), &anonymous));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("requires a user name and password"),
        "{stderr}"
    );
}

#[test]
fn a_broker_that_is_not_there_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = common::tempdir();
    let out = mqtt_test(&config(dir.path(), &format!("port = {port}")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("is the broker running"),
        "{stderr}"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn certificates(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca, key, csr, cert) = (
        format!("{name}-ca.key"),
        format!("{name}-ca.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=avscene test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    for f in [&key, &cert, &ca] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (dir.join(ca), dir.join(cert), dir.join(key))
}

#[test]
fn tls_with_the_right_ca_works_and_a_wrong_ca_is_named() {
    let files = Broker::shared_dir();
    let (ca, cert, key) = certificates(files.path(), "broker");
    let (other_ca, _, _) = certificates(files.path(), "other");
    let broker = Broker::start(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}",
        ca.display(),
        cert.display(),
        key.display()
    ));
    let dir = common::tempdir();
    let tls = |ca: &Path| {
        format!(
            "host = \"127.0.0.1\"\nport = {}\n[mqtt.tls]\nca_file = \"{}\"",
            broker.port,
            ca.display()
        )
    };
    let out = mqtt_test(&config(dir.path(), &tls(&ca)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = mqtt_test(&config(dir.path(), &tls(&other_ca)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not signed by the CA") && stderr.contains("other-ca.crt"),
        "{stderr}"
    );

    // Plain MQTT to the TLS port.
    let out = mqtt_test(&config(dir.path(), &format!("port = {}", broker.port)));
    assert_eq!(out.status.code(), Some(1));
}
