//! Helpers shared by the gguf-llama test binaries: the SmolLM2 model, loading it with given
//! options, greedy requests, and collecting a generation's text.
#![allow(dead_code, unused_imports)]

use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{GenerateOutput, GenerateRequest, LoadOptions};
use cyxwiz_testkit::cdylib_path;
pub use cyxwiz_testkit::greedy;
use std::path::PathBuf;

/// SmolLM2-135M-Instruct Q4_1, fetched by `scripts/fetch-models.py`.
pub fn smollm2() -> PathBuf {
    let path = cyxwiz_e2e::models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch-models.py",
        path.display()
    );
    path
}

/// `model` loaded through the built plugin with these load options, or the plugin's refusal.
pub fn try_load(model: &std::path::Path, options: &LoadOptions) -> cyxwiz_sdk::Result<LoadedModel> {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_gguf_llama")).unwrap();
    lib.load(model, options)
}

/// `model` loaded through the built plugin with these load options.
pub fn load_model(model: &std::path::Path, options: cyxwiz_sdk::serde_json::Value) -> LoadedModel {
    let options = LoadOptions {
        options,
        ..LoadOptions::default()
    };
    try_load(model, &options).unwrap()
}

/// SmolLM2 loaded through the built plugin with these load options.
pub fn load_with(options: cyxwiz_sdk::serde_json::Value) -> LoadedModel {
    load_model(&smollm2(), options)
}

/// Runs `request`, returning the streamed text and the outcome.
pub fn run(model: &LoadedModel, request: &GenerateRequest) -> (String, GenerateOutput) {
    let mut text = String::new();
    let out = model
        .generate(request, &mut |piece: &str| {
            text.push_str(piece);
            true
        })
        .unwrap();
    (text, out)
}

/// The tiny random llama `tests/fixtures/make_gguf.py` writes (scripts/test runs it).
pub fn tiny_llama() -> PathBuf {
    let path = cyxwiz_e2e::models_dir().join("fixtures/tiny_llama.gguf");
    assert!(
        path.is_file(),
        "{} missing: run scripts/test (it writes the fixture)",
        path.display()
    );
    path
}

/// The tiny llama loaded with these load options.
pub fn load_tiny(options: cyxwiz_sdk::serde_json::Value) -> LoadedModel {
    load_model(&tiny_llama(), options)
}
