//! TFLite and TorchScript latency, each next to its reference measured in the same run:
//! tflite-tract and tflite-litert (the TFLite C API) against Google's Python LiteRT
//! interpreter (`ai-edge-litert` 2.3.0) on the generated fp32 CNN and on MediaPipe's face
//! detector (which tract cannot run); torch-tch on silero-vad's
//! TorchScript archive against the same network's ONNX export through onnx-ort and through
//! Python `onnxruntime` 1.31.1. One thread everywhere.
//!
//! Run after `scripts/test` (it builds every plugin and writes the fixtures):
//! `cargo bench -p cyxwiz-e2e --bench tflite_torch --profile dev` (libtorch, TFLite and ONNX
//! Runtime are prebuilt libraries; the plugins' Rust dependencies are optimised in every
//! profile).

mod support;

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, LoadOptions, Tensor};
use support::{bench_python, target_dir, time};

/// Python onnxruntime on silero_vad.onnx with the inputs the Rust side feeds; prints µs.
const SILERO_REFERENCE: &str = r#"
import sys, time
import numpy as np
import onnxruntime as ort
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
n = 576
feed = {"input": (np.arange(n, dtype=np.float32) / n - 0.5).reshape(1, n),
        "state": np.zeros((2, 1, 128), dtype=np.float32),
        "sr": np.array(16000, dtype=np.int64)}
iters = int(sys.argv[2])
for _ in range(100):
    s.run(None, feed)
rounds = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(iters):
        s.run(None, feed)
    rounds.append((time.perf_counter() - t) / iters)
print(sorted(rounds)[3] * 1e6)
"#;

/// Python LiteRT on a .tflite model, input ramp(i/n - 0.5) as the Rust side feeds; prints µs.
const LITERT_REFERENCE: &str = r#"
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
n = int(np.prod(d["shape"]))
x = (np.arange(n, dtype=np.float32) / n - 0.5).reshape(d["shape"])
iters = int(sys.argv[2])
def run():
    it.set_tensor(d["index"], x)
    it.invoke()
    it.get_tensor(it.get_output_details()[0]["index"])
for _ in range(100):
    run()
rounds = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(iters):
        run()
    rounds.append((time.perf_counter() - t) / iters)
print(sorted(rounds)[3] * 1e6)
"#;

/// Runs one of the Python references above; its median µs per call.
fn python_micros(script: &str, args: &[&std::ffi::OsStr]) -> f64 {
    let out = std::process::Command::new(bench_python())
        .args(["-c", script])
        .args(args)
        .output()
        .expect("run the Python reference");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "Python reference failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn open(name: &str) -> PluginLibrary {
    PluginLibrary::open(&target_dir().join(format!("libcyxwiz_plugin_{name}.so")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn one_thread(options: cyxwiz_sdk::serde_json::Value) -> LoadOptions {
    LoadOptions {
        threads: 1,
        options,
        ..LoadOptions::default()
    }
}

fn micros(
    lib: &PluginLibrary,
    path: &std::path::Path,
    options: &LoadOptions,
    inputs: &[Tensor],
    iters: u32,
) -> f64 {
    let model = lib.load(path, options).expect("load");
    let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
    time(iters, || {
        std::hint::black_box(model.infer(&views).expect("infer"));
    })
    .as_secs_f64()
        * 1e6
}

fn ramp(name: &str, shape: Vec<i64>, offset: f32) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - offset).collect();
    Tensor::from_f32(name, shape, &values)
}

fn main() {
    let models = cyxwiz_e2e::models_dir();
    let litert_options = one_thread(json!({
        "library": models.join("runtimes/tflite/libtensorflowlite_c.so")
    }));
    let (tract, litert) = (open("tflite_tract"), open("tflite_litert"));
    println!("| model | runtime | µs per call | vs reference |");
    println!("|---|---|---:|---:|");

    let cnn = models.join("fixtures/tiny_cnn.tflite");
    let face = models.join("mediapipe-face/face_detection_short_range.tflite");
    let iters = |n: u32| std::ffi::OsString::from(n.to_string());
    for (label, path, input, n) in [
        (
            "tiny CNN 1x8x8x3 (generated)",
            &cnn,
            ramp("image", vec![1, 8, 8, 3], 0.5),
            5000,
        ),
        (
            "MediaPipe face detector 1x128x128x3",
            &face,
            ramp("input", vec![1, 128, 128, 3], 0.5),
            200,
        ),
    ] {
        let reference = python_micros(LITERT_REFERENCE, &[path.as_os_str(), &iters(n)]);
        let c_api = micros(
            &litert,
            path,
            &litert_options,
            std::slice::from_ref(&input),
            n,
        );
        let row = |runtime: &str, us: f64| {
            println!("| {label} | {runtime} | {us:.1} | {:.2}x |", us / reference)
        };
        if path == &cnn {
            row(
                "tflite-tract plugin",
                micros(&tract, path, &one_thread(json!({})), &[input], n),
            );
        } else {
            println!("| {label} | tflite-tract plugin | refused: DEQUANTIZE unsupported | - |");
        }
        row("tflite-litert plugin (TFLite C API 2.17.1)", c_api);
        row("Python ai-edge-litert 2.3.0", reference);
    }

    let onnx = models.join("silero-vad/silero_vad.onnx");
    let reference = python_micros(SILERO_REFERENCE, &[onnx.as_os_str(), &iters(2000)]);
    let sr = Tensor::from_i64("sr", vec![], &[16000]);
    let chunk = ramp("x", vec![1, 512], 0.5);
    let jit = models.join("silero-vad/silero_vad.jit");
    let torch = micros(
        &open("torch_tch"),
        &jit,
        &one_thread(json!({"input_shapes": {"x": [-1, 512]}})),
        &[chunk.clone(), sr.clone()],
        2000,
    );
    let torch_reset = micros(
        &open("torch_tch"),
        &jit,
        &one_thread(json!({"input_shapes": {"x": [-1, 512]}, "reset_method": "reset_states"})),
        &[chunk, sr.clone()],
        2000,
    );
    let ort_options = one_thread(json!({
        "library": models.join("runtimes/onnxruntime/libonnxruntime.so.1.31.1")
    }));
    let ort = micros(
        &open("onnx_ort"),
        &onnx,
        &ort_options,
        &[
            ramp("input", vec![1, 576], 0.5),
            Tensor::from_f32("state", vec![2, 1, 128], &[0.0; 256]),
            sr,
        ],
        2000,
    );
    let label = "silero-vad, one 512-sample chunk";
    println!(
        "| {label} | torch-tch plugin (TorchScript, state kept) | {torch:.1} | {:.2}x |",
        torch / reference
    );
    println!("| {label} | torch-tch plugin (TorchScript, reset_states per call) | {torch_reset:.1} | {:.2}x |", torch_reset / reference);
    println!(
        "| {label} | onnx-ort plugin (ONNX export) | {ort:.1} | {:.2}x |",
        ort / reference
    );
    println!("| {label} | Python onnxruntime 1.31.1 (ONNX export) | {reference:.1} | 1.00x |");
}
