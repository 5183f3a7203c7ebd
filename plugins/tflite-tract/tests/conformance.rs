//! tflite-tract through the SDK conformance kit on the generated fp32 CNN
//! (`tests/fixtures/make_tflite.py`), with the real TFLite C API (tflite-litert, TF 2.17.1) as
//! the reference for its outputs; and the real MediaPipe and wake-word models of MODELS.md,
//! which tract-tflite cannot run, refused as `UNSUPPORTED` naming the operators it lacks.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, DType, ErrorKind, LoadOptions, Tensor};
use cyxwiz_testkit::{allclose, cdylib_path, generated_inputs, Conformance, Sample};
use std::path::PathBuf;

fn models() -> PathBuf {
    cyxwiz_e2e::models_dir()
}

fn tiny_cnn() -> PathBuf {
    let path = models().join("fixtures/tiny_cnn.tflite");
    assert!(path.is_file(), "run scripts/test (it writes the fixture)");
    path
}

fn tract() -> PluginLibrary {
    PluginLibrary::open(&cdylib_path("cyxwiz_plugin_tflite_tract")).unwrap()
}

fn litert() -> PluginLibrary {
    PluginLibrary::open(&cdylib_path("cyxwiz_plugin_tflite_litert")).unwrap()
}

fn litert_options() -> LoadOptions {
    LoadOptions {
        options: json!({"library": models().join("runtimes/tflite/libtensorflowlite_c.so")}),
        ..LoadOptions::default()
    }
}

#[test]
fn tflite_tract_passes_the_testkit_with_tflite_as_reference() {
    let reference = litert().load(&tiny_cnn(), &litert_options()).unwrap();
    let inputs = generated_inputs(reference.info()).unwrap();
    let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
    let expected = reference.infer(&views).unwrap();
    let report = Conformance::new(cdylib_path("cyxwiz_plugin_tflite_tract"))
        .sample(
            Sample::new(tiny_cnn())
                .inputs(inputs.clone())
                .expect(expected, 1e-4, 1e-5),
        )
        .run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn tract_and_the_tflite_c_api_agree_on_many_images() {
    let ours = tract().load(&tiny_cnn(), &LoadOptions::default()).unwrap();
    let reference = litert().load(&tiny_cnn(), &litert_options()).unwrap();
    let info = ours.info();
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].name, "image");
    assert_eq!(info.inputs[0].shape, vec![1, 8, 8, 3]);
    assert_eq!(info.inputs[0].dtype, DType::F32);
    let names: Vec<&str> = info.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let mut seed = 99u32;
    for _ in 0..20 {
        let image: Vec<f32> = (0..8 * 8 * 3)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        let input = Tensor::from_f32("image", vec![1, 8, 8, 3], &image);
        let got = ours.infer(&[input.view()]).unwrap();
        let want = reference.infer(&[input.view()]).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape, w.shape, "{}", g.name);
            allclose(g, w, 1e-4, 1e-5).unwrap();
        }
        // The softmax output sums to one: the graph really ran end to end.
        let probs = got
            .iter()
            .find(|t| t.shape == vec![1, 5] && t.to_f32_vec().unwrap().iter().all(|p| *p >= 0.0))
            .unwrap()
            .to_f32_vec()
            .unwrap();
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{probs:?}");
    }
}

#[test]
fn real_models_tract_cannot_run_are_unsupported_naming_the_ops() {
    let lib = tract();
    for (model, op) in [
        (
            "mediapipe-face/face_detection_short_range.tflite",
            "DEQUANTIZE",
        ),
        ("mediapipe-face/face_landmark.tflite", "PRELU"),
        ("wakeword/okay_nabu.tflite", ""),
        ("wakeword/hey_jarvis.tflite", ""),
    ] {
        let err = lib
            .load(&models().join(model), &LoadOptions::default())
            .unwrap_err();
        println!("{model}: {err}");
        assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{model}: {err}");
        assert!(err.message.contains("no translation for"), "{model}: {err}");
        assert!(err.message.contains(op), "{model}: {err}");
        assert!(!err.message.contains('\n'), "{model}: {err}");
    }
}
