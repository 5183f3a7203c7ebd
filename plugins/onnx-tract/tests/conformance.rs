//! onnx-tract through the SDK conformance kit, on the real models of MODELS.md: the rapidocr
//! text-orientation classifier and the `onnx` package's light CNNs checked against their
//! reference outputs. Models come from `scripts/fetch-models.py`.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json, DType, ErrorKind, LoadOptions, Tensor};
use cyxwiz_testkit::{cdylib_path, Conformance, Sample};
use std::path::PathBuf;

const LIGHT: [&str; 9] = [
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
];

fn models_dir() -> PathBuf {
    let dir = cyxwiz_e2e::models_dir();
    assert!(
        dir.join("rapidocr").is_dir(),
        "models missing in {}: run scripts/fetch-models.py",
        dir.display()
    );
    dir
}

/// rapidocr runs its classifier on 48x192 crops; pinning height and width as rapidocr does
/// gives tract one symbolic-batch plan.
fn classifier_options() -> LoadOptions {
    LoadOptions {
        options: serde_json::json!({"input_shapes": {"x": [-1, 3, 48, 192]}}),
        ..LoadOptions::default()
    }
}

fn classifier() -> PathBuf {
    models_dir().join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

fn library() -> PathBuf {
    cdylib_path("cyxwiz_plugin_onnx_tract")
}

/// Reads an ONNX `TensorProto` reference output.
fn reference(path: &std::path::Path) -> Tensor {
    let file = std::fs::File::open(path).unwrap();
    let proto = tract_onnx::tensor::proto_from_reader(file).unwrap();
    let tensor = tract_onnx::tensor::load_tensor(
        &tract_onnx::data_resolver::FopenDataResolver,
        &proto,
        None,
    )
    .unwrap();
    assert_eq!(tensor.datum_type(), tract_onnx::prelude::DatumType::F32);
    Tensor {
        name: proto.name.clone(),
        dtype: DType::F32,
        shape: tensor.shape().iter().map(|d| *d as i64).collect(),
        data: tensor.as_bytes().to_vec(),
    }
}

#[test]
fn onnx_tract_passes_the_testkit_on_real_models() {
    let models = models_dir();
    let mut suite =
        Conformance::new(library()).sample(Sample::new(classifier()).options(classifier_options()));
    for name in LIGHT {
        let dir = models.join("onnx-light");
        let expected = reference(&dir.join(format!("light_{name}_output_0.pb")));
        // The onnx backend suite's own tolerances are rtol 1e-3 (2e-3 for densenet), atol 1e-7.
        suite = suite.sample(Sample::new(dir.join(format!("light_{name}.onnx"))).expect(
            vec![expected],
            2e-3,
            1e-6,
        ));
    }
    let report = suite.run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn rapidocr_classifier_outputs_probabilities() {
    let lib = PluginLibrary::open(&library()).unwrap();
    let model = lib.load(&classifier(), &classifier_options()).unwrap();
    let spec = &model.info().inputs[0];
    assert_eq!(spec.dtype, DType::F32);
    assert_eq!(&spec.shape[1..], &[3, 48, 192], "{spec:?}");
    // A batch of two different images: each row is a softmax over the two orientations.
    let n = 3 * 48 * 192;
    let values: Vec<f32> = (0..2 * n)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let x = Tensor::from_f32(spec.name.clone(), vec![2, 3, 48, 192], &values);
    let out = model.infer(&[x.view()]).unwrap();
    assert_eq!(out[0].shape, vec![2, 2]);
    let p = out[0].to_f32_vec().unwrap();
    for row in p.chunks(2) {
        assert!(
            (row[0] + row[1] - 1.0).abs() < 1e-4,
            "{row:?} is not a distribution"
        );
        assert!(row.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn control_flow_model_is_unsupported_and_names_the_node() {
    let lib = PluginLibrary::open(&library()).unwrap();
    let err = lib
        .load(
            &models_dir().join("silero-vad/silero_vad.onnx"),
            &LoadOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(
        err.message.contains("If"),
        "the message names the `If` node: {err}"
    );
    assert!(!err.message.contains('\n'), "one line: {err}");
}

#[test]
fn open_image_size_runs_with_a_plan_per_shape() {
    // Without pinned shapes tract cannot type the final Reshape symbolically; the plugin then
    // compiles one plan per concrete input shape.
    let lib = PluginLibrary::open(&library()).unwrap();
    let model = lib.load(&classifier(), &LoadOptions::default()).unwrap();
    assert_eq!(model.info().inputs[0].shape, vec![-1, 3, -1, -1]);
    assert_eq!(model.info().outputs[0].shape, vec![-1, 2]);
    for (batch, width) in [(1, 192), (3, 96), (1, 192)] {
        let n = batch * 3 * 48 * width;
        let x = Tensor::from_f32("x", vec![batch as i64, 3, 48, width as i64], &vec![0.25; n]);
        let out = model.infer(&[x.view()]).unwrap();
        assert_eq!(out[0].shape, vec![batch as i64, 2]);
    }
}

#[test]
fn bad_input_shapes_option_is_invalid_input() {
    let lib = PluginLibrary::open(&library()).unwrap();
    for options in [
        serde_json::json!({"input_shapes": {"nope": [1, 3, 48, 192]}}),
        serde_json::json!({"input_shapes": {"x": "48x192"}}),
        serde_json::json!({"input_shapes": [1, 2]}),
    ] {
        let options = LoadOptions {
            options,
            ..LoadOptions::default()
        };
        let err = lib.load(&classifier(), &options).unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
        assert!(err.message.contains("input_shapes"), "{err}");
    }
}

#[test]
fn a_graph_tract_types_but_cannot_run_is_refused_at_load() {
    // The MiniLM int8 export types symbolically, but its attention mask broadcast fails as
    // soon as batch and sequence differ from 1: the load-time probe finds it.
    let lib = PluginLibrary::open(&library()).unwrap();
    let model = models_dir().join("minilm/model.onnx");
    let err = lib.load(&model, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
    assert!(err.message.contains("cannot run it"), "{err}");
    assert!(!err.message.contains('\n'), "one line: {err}");
    // The probe can be switched off; the model then loads (and fails on real inputs).
    let options = LoadOptions {
        options: serde_json::json!({"probe": false}),
        ..LoadOptions::default()
    };
    assert!(lib.load(&model, &options).is_ok());
}
