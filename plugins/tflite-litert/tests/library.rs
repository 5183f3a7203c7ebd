//! The TFLite C library: missing or foreign libraries are refused naming the path or the
//! missing function, and a corrected path then works in the same process. One test function,
//! because the library is loaded once per process.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, ErrorKind, LoadOptions};
use cyxwiz_testkit::cdylib_path;

fn with_library(library: &str) -> LoadOptions {
    LoadOptions {
        options: json!({"library": library}),
        ..LoadOptions::default()
    }
}

#[test]
fn bad_libraries_are_refused_and_a_good_one_then_works() {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_tflite_litert")).unwrap();
    let model = cyxwiz_e2e::models_dir().join("wakeword/okay_nabu.tflite");

    let err = lib
        .load(&model, &with_library("/nonexistent/libtensorflowlite_c.so"))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(
        err.message.contains("/nonexistent/libtensorflowlite_c.so"),
        "{err}"
    );

    let foreign = cdylib_path("cyxwiz_plugin_onnx_tract");
    let err = lib
        .load(&model, &with_library(foreign.to_str().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(err.message.contains("lacks `TfLiteVersion`"), "{err}");

    let good = cyxwiz_e2e::models_dir().join("runtimes/tflite/libtensorflowlite_c.so");
    let loaded = lib
        .load(&model, &with_library(good.to_str().unwrap()))
        .unwrap();
    let version = loaded
        .info()
        .metadata
        .iter()
        .find(|(k, _)| k == "tensorflow_version")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(version.starts_with("2.17"), "{version}");
}
