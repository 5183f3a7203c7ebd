//! tflite-litert through the SDK conformance kit on the real TFLite models of MODELS.md (the
//! microWakeWord int8 streaming models and MediaPipe's face detector and face landmarker),
//! with the TFLite C library from the `pymicro-wakeword` wheel.
#![allow(clippy::unwrap_used)]

mod common;

use common::{models, options, options_with, plugin};
use cyxwiz_sdk::{serde_json::json, DType, ErrorKind, Tensor};
use cyxwiz_testkit::{cdylib_path, Conformance, Sample};

#[test]
fn tflite_litert_passes_the_testkit_on_real_models() {
    let mut suite = Conformance::new(cdylib_path("cyxwiz_plugin_tflite_litert"));
    for model in [
        "mediapipe-face/face_detection_short_range.tflite",
        "mediapipe-face/face_landmark.tflite",
        "wakeword/okay_nabu.tflite",
        "wakeword/hey_jarvis.tflite",
    ] {
        suite = suite.sample(Sample::new(models().join(model)).options(options()));
    }
    let report = suite.run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn face_detector_gives_896_anchors_with_scores() {
    let lib = plugin();
    let model = lib
        .load(
            &models().join("mediapipe-face/face_detection_short_range.tflite"),
            &options(),
        )
        .unwrap();
    let spec = &model.info().inputs[0];
    assert_eq!(spec.shape, vec![1, 128, 128, 3]);
    assert_eq!(spec.dtype, DType::F32);
    let n = 128 * 128 * 3;
    let image: Vec<f32> = (0..n).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    let out = model
        .infer(&[Tensor::from_f32(spec.name.clone(), vec![1, 128, 128, 3], &image).view()])
        .unwrap();
    let shapes: Vec<Vec<i64>> = out.iter().map(|t| t.shape.clone()).collect();
    assert!(
        shapes.contains(&vec![1, 896, 16]) && shapes.contains(&vec![1, 896, 1]),
        "{shapes:?}"
    );
    for t in &out {
        assert!(t.to_f32_vec().unwrap().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn wake_word_model_streams_int8_features() {
    let lib = plugin();
    let model = lib
        .load(&models().join("wakeword/okay_nabu.tflite"), &options())
        .unwrap();
    let input = &model.info().inputs[0];
    assert_eq!(input.dtype, DType::I8, "{input:?}");
    let n: i64 = input.shape.iter().product();
    let features = Tensor {
        name: input.name.clone(),
        dtype: DType::I8,
        shape: input.shape.clone(),
        data: (0..n).map(|i| (i % 50) as u8).collect(),
    };
    // A streaming model: consecutive calls carry state; every call answers one probability.
    for _ in 0..5 {
        let out = model.infer(&[features.view()]).unwrap();
        assert_eq!(out[0].data.len(), 1, "{:?}", out[0]);
    }
}

#[test]
fn missing_model_is_not_found() {
    let lib = plugin();
    let err = lib
        .load(&models().join("wakeword/missing.tflite"), &options())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NOT_FOUND, "{err}");
}

#[test]
fn xnnpack_option_is_checked_and_reported() {
    let lib = plugin();
    let face = models().join("mediapipe-face/face_detection_short_range.tflite");
    let with = |xnnpack: cyxwiz_sdk::serde_json::Value| options_with(json!({"xnnpack": xnnpack}));
    let err = lib.load(&face, &with(json!("yes"))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(
        err.message.contains("`xnnpack` must be true or false"),
        "{err}"
    );
    let delegate = |xnnpack: bool| {
        let model = lib.load(&face, &with(json!(xnnpack))).unwrap();
        let info = model.info();
        info.metadata
            .iter()
            .find(|(k, _)| k == "delegate")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(delegate(true), "xnnpack");
    assert_eq!(delegate(false), "none (xnnpack: false)");
}
