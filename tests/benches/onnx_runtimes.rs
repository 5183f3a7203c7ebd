//! ONNX latency: the onnx-tract and onnx-ort plugins (called through the plugin ABI) next to
//! Python `onnxruntime` 1.31.1 on the same models and inputs, measured in the same run.
//!
//! Needs a Python with `onnxruntime==1.31.1` and `numpy`: set `CYXWIZ_BENCH_PYTHON` (default
//! `~/.cache/cyxwiz-venv/bin/python`). Run after `cargo build --workspace`:
//! `cargo bench -p cyxwiz-e2e --bench onnx_runtimes --profile dev` (the plugins' dependencies
//! are optimised in every profile, and ONNX Runtime is a prebuilt library).

mod support;

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, LoadOptions, Tensor};
use std::path::PathBuf;
use support::{bench_python, target_dir, time};

fn main() {
    let models = cyxwiz_e2e::models_dir();
    let python = bench_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ort_reference.py");
    let library = models.join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    let tract = PluginLibrary::open(&target_dir().join("libcyxwiz_plugin_onnx_tract.so"))
        .expect("tract plugin");
    let ort = PluginLibrary::open(&target_dir().join("libcyxwiz_plugin_onnx_ort.so"))
        .expect("ort plugin");
    let cases: [(&str, PathBuf, &str, Vec<i64>, u32); 3] = [
        (
            "rapidocr classifier 1x3x48x192",
            models.join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
            "x",
            vec![1, 3, 48, 192],
            200,
        ),
        (
            "squeezenet 1x3x224x224",
            models.join("onnx-light/light_squeezenet.onnx"),
            "data_0",
            vec![1, 3, 224, 224],
            30,
        ),
        (
            "resnet50 1x3x224x224",
            models.join("onnx-light/light_resnet50.onnx"),
            "gpu_0/data_0",
            vec![1, 3, 224, 224],
            10,
        ),
    ];
    println!("| model | runtime | µs per call | vs Python onnxruntime |");
    println!("|---|---|---:|---:|");
    for (label, path, input, shape, iters) in cases {
        let n: i64 = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let x = Tensor::from_f32(input, shape.clone(), &values);
        let reference = std::process::Command::new(&python)
            .arg(&script)
            .arg(&path)
            .arg(input)
            .arg(
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg(iters.to_string())
            .arg("1")
            .output()
            .expect("run the Python reference");
        let reference_us: f64 = String::from_utf8_lossy(&reference.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "Python reference failed: {}",
                    String::from_utf8_lossy(&reference.stderr)
                )
            });
        let one_thread = LoadOptions {
            threads: 1,
            ..LoadOptions::default()
        };
        let with_lib = LoadOptions {
            threads: 1,
            options: json!({"library": library}),
            ..LoadOptions::default()
        };
        for (name, lib, options) in [
            ("onnx-tract plugin", &tract, &one_thread),
            ("onnx-ort plugin", &ort, &with_lib),
        ] {
            let model = lib.load(&path, options).expect("load");
            let t = time(iters, || {
                std::hint::black_box(model.infer(&[x.view()]).expect("infer"));
            });
            let us = t.as_secs_f64() * 1e6;
            println!("| {label} | {name} | {us:.1} | {:.2}x |", us / reference_us);
        }
        println!("| {label} | Python onnxruntime 1.31.1 | {reference_us:.1} | 1.00x |");
    }
}
