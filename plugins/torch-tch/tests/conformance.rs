//! torch-tch through the SDK conformance kit on silero-vad's TorchScript archive (MODELS.md),
//! and the same network's ONNX export through onnx-ort as the cross-format reference: one
//! chunk from a fresh state, and a stream of chunks where both carry state between calls.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{serde_json::json, DType, ErrorKind, LoadOptions, Tensor};
use cyxwiz_testkit::{cdylib_path, Conformance, Sample};
use std::path::PathBuf;

fn models() -> PathBuf {
    let dir = cyxwiz_e2e::models_dir();
    assert!(
        dir.join("silero-vad/silero_vad.jit").is_file(),
        "run scripts/fetch-models.py"
    );
    dir
}

fn jit() -> PathBuf {
    models().join("silero-vad/silero_vad.jit")
}

fn jit_options(reset: bool) -> LoadOptions {
    let mut options = json!({"input_shapes": {"x": [-1, 512]}});
    if reset {
        options["reset_method"] = json!("reset_states");
    }
    LoadOptions {
        threads: 1,
        options,
        ..LoadOptions::default()
    }
}

/// 16 kHz audio: a tone that comes and goes over a little deterministic noise.
fn audio(chunks: usize) -> Vec<f32> {
    let mut seed = 12345u32;
    (0..chunks * 512)
        .map(|i| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = ((seed >> 16) as f32 / 65536.0 - 0.5) * 0.02;
            let t = i as f32 / 16000.0;
            let envelope = if (i / 2048) % 2 == 1 { 0.5 } else { 0.0 };
            envelope * (2.0 * std::f32::consts::PI * 220.0 * t).sin() + noise
        })
        .collect()
}

fn sr() -> Tensor {
    Tensor::from_i64("sr", vec![], &[16000])
}

fn torch_plugin() -> PluginLibrary {
    PluginLibrary::open(&cdylib_path("cyxwiz_plugin_torch_tch")).unwrap()
}

fn onnx_model(lib: &PluginLibrary) -> LoadedModel {
    let library = models().join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    lib.load(
        &models().join("silero-vad/silero_vad.onnx"),
        &LoadOptions {
            threads: 1,
            options: json!({"library": library}),
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn probability(out: &[Tensor], name: &str) -> f32 {
    out.iter()
        .find(|t| t.name == name)
        .unwrap()
        .to_f32_vec()
        .unwrap()[0]
}

#[test]
fn torch_tch_passes_the_testkit_on_silero_vad() {
    let chunk = Tensor::from_f32("x", vec![1, 512], &audio(1));
    let report = Conformance::new(cdylib_path("cyxwiz_plugin_torch_tch"))
        .sample(
            Sample::new(jit())
                .options(jit_options(true))
                .inputs(vec![chunk, sr()]),
        )
        .run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn signature_becomes_the_inputs() {
    let lib = torch_plugin();
    let model = lib.load(&jit(), &jit_options(true)).unwrap();
    let info = model.info();
    let inputs: Vec<(String, DType, Vec<i64>)> = info
        .inputs
        .iter()
        .map(|s| (s.name.clone(), s.dtype, s.shape.clone()))
        .collect();
    assert_eq!(
        inputs,
        vec![
            ("x".into(), DType::F32, vec![-1, 512]),
            ("sr".into(), DType::I64, vec![])
        ]
    );
    let meta: std::collections::BTreeMap<_, _> = info.metadata.iter().cloned().collect();
    assert_eq!(meta["signature"], "forward(x: Tensor, sr: int) -> Tensor");
    assert_eq!(meta["libtorch_version"], "2.13.0");
}

#[test]
fn one_chunk_matches_the_onnx_export() {
    let torch = torch_plugin();
    let ort = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    let jit_model = torch.load(&jit(), &jit_options(true)).unwrap();
    let onnx = onnx_model(&ort);
    let samples = audio(4);
    for chunk in samples.chunks(512) {
        let got = jit_model
            .infer(&[
                Tensor::from_f32("x", vec![1, 512], chunk).view(),
                sr().view(),
            ])
            .unwrap();
        assert_eq!(got[0].name, "output");
        assert_eq!(got[0].shape, vec![1, 1]);
        // The ONNX export takes the 64-sample context the TorchScript module keeps itself
        // (zero on a fresh state) in front of the chunk, and the recurrent state explicitly.
        let mut input = vec![0.0f32; 64];
        input.extend_from_slice(chunk);
        let want = onnx
            .infer(&[
                Tensor::from_f32("input", vec![1, 576], &input).view(),
                Tensor::from_f32("state", vec![2, 1, 128], &[0.0; 256]).view(),
                sr().view(),
            ])
            .unwrap();
        let (a, b) = (probability(&got, "output"), probability(&want, "output"));
        assert!((a - b).abs() < 1e-4, "torchscript {a} vs onnx {b}");
    }
}

#[test]
fn a_stream_of_chunks_matches_the_onnx_export_carrying_state() {
    let torch = torch_plugin();
    let ort = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    // No reset_method: the module keeps its state and context between calls.
    let jit_model = torch.load(&jit(), &jit_options(false)).unwrap();
    let onnx = onnx_model(&ort);
    let samples = audio(24);
    let mut state = vec![0.0f32; 256];
    let mut context = vec![0.0f32; 64];
    let (mut low, mut high) = (1.0f32, 0.0f32);
    for chunk in samples.chunks(512) {
        let got = jit_model
            .infer(&[
                Tensor::from_f32("x", vec![1, 512], chunk).view(),
                sr().view(),
            ])
            .unwrap();
        let mut input = context.clone();
        input.extend_from_slice(chunk);
        let want = onnx
            .infer(&[
                Tensor::from_f32("input", vec![1, 576], &input).view(),
                Tensor::from_f32("state", vec![2, 1, 128], &state).view(),
                sr().view(),
            ])
            .unwrap();
        state = want
            .iter()
            .find(|t| t.name == "stateN")
            .unwrap()
            .to_f32_vec()
            .unwrap();
        context = chunk[512 - 64..].to_vec();
        let (a, b) = (probability(&got, "output"), probability(&want, "output"));
        assert!((a - b).abs() < 1e-4, "torchscript {a} vs onnx {b}");
        low = low.min(a);
        high = high.max(a);
    }
    // The comparison means something only if the stream moved the state.
    assert!(high - low > 0.01, "probabilities stayed at {low}..{high}");
}

#[test]
fn shapes_must_be_declared_and_bad_files_are_refused() {
    let lib = torch_plugin();
    let err = lib.load(&jit(), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(
        err.message.contains("input_shapes") && err.message.contains("forward(x: Tensor, sr: int)"),
        "{err}"
    );
    let err = lib
        .load(
            &jit(),
            &LoadOptions {
                options: json!({"input_shapes": {"y": [1]}}),
                ..LoadOptions::default()
            },
        )
        .unwrap_err();
    assert!(err.message.contains("`y`"), "{err}");
    let err = lib
        .load(
            &jit(),
            &LoadOptions {
                options: json!({"input_shapes": {"x": [-1, 512]}, "reset_method": "nope"}),
                ..LoadOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(err.message.contains("nope"), "{err}");
    let err = lib
        .load(
            &models().join("silero-vad/silero_vad.onnx"),
            &jit_options(true),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(err.message.contains("not a TorchScript archive"), "{err}");
    // A wrong sample rate is the model's own check: a clear error, the model stays usable.
    let model = lib.load(&jit(), &jit_options(true)).unwrap();
    let chunk = Tensor::from_f32("x", vec![1, 512], &audio(1));
    let err = model
        .infer(&[
            chunk.view(),
            Tensor::from_i64("sr", vec![], &[12345]).view(),
        ])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(!err.message.contains('\n'), "{err}");
    assert!(model.infer(&[chunk.view(), sr().view()]).is_ok());
}
