//! scripts/install.sh and scripts/uninstall.sh, staged under a folder (`--root`, no root
//! rights, no systemd): a fresh install puts every file in place but enables nothing
//! without a model and says what to do next; `--demo` installs the demo model and its
//! configuration; an existing configuration is kept; uninstall keeps configuration and
//! data unless `--purge`.

mod common;

use std::path::Path;
use std::process::Command;

use common::text;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn script(name: &str, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(Path::new(REPO).join("scripts").join(name))
        .args(args)
        .output()
        .unwrap()
}

fn ready_to_stage() -> bool {
    let deps = Path::new(REPO).join(".deps/env.sh").is_file();
    let patchelf = Command::new("patchelf").arg("--version").output().is_ok();
    if !(deps && patchelf) {
        common::cannot_run(
            "install",
            "needs scripts/setup.sh's .deps/env.sh and patchelf (setup.sh installs both)",
        );
    }
    deps && patchelf
}

#[test]
fn a_fresh_install_enables_nothing_without_a_model_and_uninstall_keeps_the_data() {
    if !ready_to_stage() {
        return;
    }
    let dir = common::tempdir();
    let root = dir.path().to_str().unwrap();
    let run = script("install.sh", &["--root", root]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    for file in [
        "usr/local/bin/avscene",
        "usr/local/lib/avscene/torch/lib/libtorch_cpu.so",
        "usr/local/share/avscene/pipelines/file.toml",
        "etc/avscene/avscene.toml",
        "etc/avscene/pipelines/camera-mic.toml",
        "etc/systemd/system/avscene.service",
    ] {
        assert!(
            dir.path().join(file).is_file(),
            "{file} is installed: {said}"
        );
    }
    let rpath = Command::new("patchelf")
        .arg("--print-rpath")
        .arg(dir.path().join("usr/local/bin/avscene"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rpath.stdout).trim(),
        "/usr/local/lib/avscene/torch/lib"
    );
    for step in [
        "not enabled",
        "names no model",
        "avscene devices",
        "fetch-weights",
        "enable --now",
    ] {
        assert!(said.contains(step), "{step}: {said}");
    }

    // A configuration of one's own survives a reinstall.
    let config = dir.path().join("etc/avscene/avscene.toml");
    std::fs::write(
        &config,
        "# mine\n[[stream]]\nname = \"porch\"\npipeline = \"pipelines/test.toml\"\n",
    )
    .unwrap();
    let run = script("install.sh", &["--root", root]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .starts_with("# mine")
    );
    std::fs::write(
        dir.path().join("var/lib/avscene/my-model.safetensors"),
        "weights",
    )
    .unwrap();

    // Uninstalling removes the program and keeps the configuration and the data …
    let run = script("uninstall.sh", &["--root", root]);
    assert!(run.status.success(), "{}", text(&run));
    for gone in [
        "usr/local/bin/avscene",
        "usr/local/lib/avscene",
        "usr/local/share/avscene",
        "etc/systemd/system/avscene.service",
    ] {
        assert!(!dir.path().join(gone).exists(), "{gone} removed");
    }
    assert!(config.is_file());
    assert!(
        dir.path()
            .join("var/lib/avscene/my-model.safetensors")
            .is_file()
    );
    // … unless asked.
    let run = script("uninstall.sh", &["--root", root, "--purge"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(!dir.path().join("etc/avscene").exists());
    assert!(!dir.path().join("var/lib/avscene").exists());
}

#[test]
fn the_demo_install_brings_its_model_and_would_start() {
    if !ready_to_stage() {
        return;
    }
    if !Path::new(REPO)
        .join(".deps/demo-model/best.safetensors")
        .is_file()
    {
        common::cannot_run(
            "install",
            "the demo model is missing: scripts/setup.sh trains it",
        );
        return;
    }
    let dir = common::tempdir();
    let root = dir.path().to_str().unwrap();
    let run = script("install.sh", &["--root", root, "--demo"]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        dir.path()
            .join("var/lib/avscene/demo-model.safetensors")
            .is_file()
    );
    let config = std::fs::read_to_string(dir.path().join("etc/avscene/avscene.toml")).unwrap();
    assert!(
        config.contains("path = \"/var/lib/avscene/demo-model.safetensors\""),
        "{config}"
    );
    assert!(
        !said.contains("not enabled"),
        "the demo has a model: {said}"
    );
    // A second --demo would overwrite a configuration: refused.
    let run = script("install.sh", &["--root", root, "--demo"]);
    assert!(!run.status.success());
    assert!(text(&run).contains("is kept"), "{}", text(&run));
}
