//! The probe cache keeps an answer across opens and drops it when its library, the options of
//! its plugin or a file those options name changes.

use super::*;
use std::time::{Duration, SystemTime};

fn described(name: &str) -> Described {
    Described {
        name: name.to_string(),
        version: "1.2.3".to_string(),
        description: "a test plugin".to_string(),
        formats: vec![("onnx".to_string(), vec!["onnx".to_string()])],
        capabilities: 1,
        interface_version: cyxwiz_sdk::INTERFACE_VERSION.to_string(),
        runtime: Some("Runtime 9.9".to_string()),
        runtime_error: None,
    }
}

fn runtimes(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    json.as_object().cloned().unwrap()
}

fn touch(path: &Path, seconds_ahead: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(seconds_ahead))
        .unwrap();
}

#[test]
fn an_answer_survives_a_reopen_until_its_library_changes() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libp.so");
    std::fs::write(&lib, b"library bytes").unwrap();
    let file = dir.path().join("plugin-cache.json");
    let none = runtimes(serde_json::json!({}));

    let mut cache = Cache::open(Some(&file));
    assert!(cache.get(&Fingerprint::of(&lib), &none).is_none());
    cache.put(Fingerprint::of(&lib), &none, &described("p"));
    cache.save();

    let cache = Cache::open(Some(&file));
    assert_eq!(
        cache.get(&Fingerprint::of(&lib), &none),
        Some(&described("p"))
    );

    touch(&lib, 60);
    assert!(Cache::open(Some(&file))
        .get(&Fingerprint::of(&lib), &none)
        .is_none());
    std::fs::write(&lib, b"other library bytes, longer").unwrap();
    assert!(Cache::open(Some(&file))
        .get(&Fingerprint::of(&lib), &none)
        .is_none());
}

#[test]
fn an_answer_depends_on_its_plugins_options_and_the_files_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libp.so");
    std::fs::write(&lib, b"library bytes").unwrap();
    let runtime_lib = dir.path().join("libruntime.so");
    std::fs::write(&runtime_lib, b"runtime").unwrap();
    let with_library = runtimes(serde_json::json!({
        "p": {"library": runtime_lib.to_str().unwrap()},
        "other": {"threads": 2},
    }));

    let mut cache = Cache::open(None);
    cache.put(Fingerprint::of(&lib), &with_library, &described("p"));
    let print = Fingerprint::of(&lib);
    assert!(cache.get(&print, &with_library).is_some());
    // Another plugin's options do not matter; this one's do.
    let mut others_changed = with_library.clone();
    others_changed.insert("other".into(), serde_json::json!({"threads": 4}));
    assert!(cache.get(&print, &others_changed).is_some());
    assert!(cache
        .get(&print, &runtimes(serde_json::json!({})))
        .is_none());
    // The runtime library the options name was replaced.
    touch(&runtime_lib, 60);
    assert!(cache.get(&print, &with_library).is_none());
}

#[test]
fn a_failed_library_is_forgotten_and_gone_libraries_are_dropped_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("liba.so"), dir.path().join("libb.so"));
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&b, b"b").unwrap();
    let file = dir.path().join("plugin-cache.json");
    let none = runtimes(serde_json::json!({}));
    let mut cache = Cache::open(Some(&file));
    cache.put(Fingerprint::of(&a), &none, &described("a"));
    cache.put(Fingerprint::of(&b), &none, &described("b"));
    cache.forget(&Fingerprint::of(&a));
    cache.save();
    std::fs::remove_file(&b).unwrap();
    let mut cache = Cache::open(Some(&file));
    assert!(cache.get(&Fingerprint::of(&a), &none).is_none());
    assert_eq!(cache.file.entries.len(), 1);
    cache.changed = false;
    cache.save();
    assert_eq!(Cache::open(Some(&file)).file.entries.len(), 0);
}
