//! train-candle through the SDK's kits: the training conformance section, and the inference
//! conformance suite on a weights file it trained itself (the train → serve path).
#![allow(clippy::unwrap_used)]

use cyxwiz_testkit::{cdylib_path, trained_weights, Conformance, Sample, TrainingConformance};
use std::path::PathBuf;

fn library() -> PathBuf {
    cdylib_path("cyxwiz_plugin_train_candle")
}

#[test]
fn train_candle_passes_the_training_conformance() {
    let report = TrainingConformance::new(library()).run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn weights_it_trained_pass_the_inference_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let weights = trained_weights(&library(), "cpu", dir.path()).unwrap();
    let report = Conformance::new(library())
        .sample(Sample::new(weights))
        .run();
    println!("{report}");
    report.assert_passed();
}
