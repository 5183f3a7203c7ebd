//! A plugin built against another minor version of `cyxwiz-plugin-api` is refused at load
//! with a message naming both versions. The test copies plugin-api, the SDK and the example
//! plugin into a scratch workspace, sets plugin-api to the next minor version, builds it with
//! cargo (offline, same lock file, its own target directory so later runs reuse the build),
//! and asks the node.

mod common;

use cyxwiz_plugin_host::{OpenError, PluginLibrary};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn manifest(name: &str, version: &str, extra: &str, deps: &str) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n{extra}\n[dependencies]\n{deps}\n"
    )
}

/// Builds the example plugin against plugin-api `version`; returns the library path.
fn build_skewed_plugin(version: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let scratch = common::target_dir().join(format!("abi-skew-{version}"));
    let src = scratch.join("src");
    let _ = std::fs::remove_dir_all(&src);
    copy_dir(&root.join("plugin-api/src"), &src.join("plugin-api/src"));
    copy_dir(&root.join("sdk/src"), &src.join("sdk/src"));
    copy_dir(
        &root.join("examples/minimal-plugin/src"),
        &src.join("plugin/src"),
    );
    let dep = |name: &str| format!("{name} = \"={}\"\n", locked_version(&root, name));
    std::fs::write(
        src.join("plugin-api/Cargo.toml"),
        manifest("cyxwiz-plugin-api", version, "", &dep("abi_stable")),
    )
    .unwrap();
    std::fs::write(
        src.join("sdk/Cargo.toml"),
        manifest(
            "cyxwiz-sdk",
            "0.1.0",
            "",
            &format!(
                "cyxwiz-plugin-api = {{ path = \"../plugin-api\" }}\nserde = {{ version = \"={}\", features = [\"derive\"] }}\n{}{}{}{}",
                locked_version(&root, "serde"),
                dep("serde_json"),
                dep("serde_path_to_error"),
                dep("thiserror"),
                dep("tracing")
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("plugin/Cargo.toml"),
        manifest(
            "cyxwiz-plugin-example-scale",
            "0.1.0",
            "[lib]\ncrate-type = [\"cdylib\"]\n",
            "cyxwiz-sdk = { path = \"../sdk\" }\n",
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"sdk\", \"plugin\"]\n",
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), src.join("Cargo.lock")).unwrap();
    let target = scratch.join("target");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "-p", "cyxwiz-plugin-example-scale"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the skewed plugin failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/libcyxwiz_plugin_example_scale.so")
}

/// The version of `name` in the workspace lock file, so the scratch build needs no network.
fn locked_version(root: &Path, name: &str) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            let version = lines.next().unwrap();
            return version
                .trim_start_matches("version = \"")
                .trim_end_matches('"')
                .to_string();
        }
    }
    panic!("{name} not in Cargo.lock");
}

/// The host's interface version with the minor version bumped (`0.2.0` → `0.3.0`), and with
/// only the patch changed (`0.2.7`).
fn skewed_versions() -> (String, String) {
    let host = cyxwiz_sdk::INTERFACE_VERSION;
    let mut parts = host.split('.').map(|p| p.parse::<u32>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    (
        format!("{major}.{}.0", minor + 1),
        format!("{major}.{minor}.7"),
    )
}

#[test]
fn plugin_built_against_another_minor_version_is_refused_naming_both() {
    let (other_minor, _) = skewed_versions();
    let lib = build_skewed_plugin(&other_minor);
    match PluginLibrary::open(&lib) {
        Err(OpenError::IncompatibleVersion { plugin, host }) => {
            assert_eq!(plugin, other_minor);
            assert_eq!(host, cyxwiz_sdk::INTERFACE_VERSION);
        }
        other => panic!("expected an incompatible-version error, got {other:?}"),
    }

    // The node lists it as failed with both versions and still loads the others.
    let node = common::Node::new();
    std::fs::copy(&lib, node.plugins_dir().join("libskewed.so")).unwrap();
    let out = node.cli(&["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&common::stdout(&out)).unwrap();
    let skewed = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("libskewed.so"))
        .unwrap();
    let reason = skewed["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("cyxwiz-plugin-api {other_minor}"))
            && reason.contains(&format!("speaks {}", cyxwiz_sdk::INTERFACE_VERSION)),
        "{reason}"
    );
    assert!(rows
        .iter()
        .any(|r| r["name"] == "onnx-tract" && r["status"] == "loaded"));
}

#[test]
fn patch_release_of_the_interface_still_loads() {
    // Same minor version, newer patch: compatible by the versioning rule.
    let (_, patch) = skewed_versions();
    let lib = build_skewed_plugin(&patch);
    let opened = PluginLibrary::open(&lib).expect("a newer patch release of the interface loads");
    assert_eq!(opened.metadata().interface_version, patch);
}
