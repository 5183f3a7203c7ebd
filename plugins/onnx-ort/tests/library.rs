//! The ONNX Runtime library: missing or foreign libraries are refused with a message naming
//! the path, and a corrected path works afterwards in the same process. One test function,
//! because ONNX Runtime is initialised once per process.
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
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    let model = cyxwiz_e2e::models_dir().join("onnx-light/light_squeezenet.onnx");

    let err = lib
        .load(&model, &with_library("/nonexistent/libonnxruntime.so"))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(
        err.message.contains("/nonexistent/libonnxruntime.so")
            && err.message.contains("does not exist"),
        "{err}"
    );

    // A real shared library that is not ONNX Runtime.
    let foreign = cdylib_path("cyxwiz_plugin_onnx_tract");
    let err = lib
        .load(&model, &with_library(foreign.to_str().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(err.message.contains("OrtGetApiBase"), "{err}");

    let good = cyxwiz_e2e::models_dir().join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    let model = lib
        .load(&model, &with_library(good.to_str().unwrap()))
        .unwrap();
    assert_eq!(model.info().inputs[0].shape, vec![1, 3, 224, 224]);
}
