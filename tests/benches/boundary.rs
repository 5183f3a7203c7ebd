//! What the plugin boundary costs: the same model run directly in-process, through the plugin
//! ABI (`PluginLibrary`), and through the host's model worker (ABI + bounded channel + thread
//! hop + one-shot reply). Prints microseconds per call and ratios to the direct call.
//!
//! `cargo bench -p cyxwiz-e2e --bench boundary` (after `cargo build --workspace --release`,
//! which puts the plugin libraries next to the bench binary's profile directory).

mod support;

use cyxwiz_node::models::{Engine, ModelWorker};
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{LoadOptions, Plugin as _, Tensor};
use std::time::Duration;
use support::{target_dir, time};
use tract_onnx::prelude::*;

fn row(model: &str, path: &str, t: Duration, base: Duration) {
    println!(
        "| {model:<22} | {path:<32} | {:>12.2} | {:>6.2}x |",
        t.as_secs_f64() * 1e6,
        t.as_secs_f64() / base.as_secs_f64()
    );
}

fn main() {
    let lib_dir = target_dir();
    println!(
        "| model                  | path                             | µs per call  | ratio   |"
    );
    println!(
        "|------------------------|----------------------------------|--------------|---------|"
    );

    // 1. A trivial model: the boundary cost dominates.
    let scale_file = std::env::temp_dir().join("cyxwiz-bench.scale");
    std::fs::write(&scale_file, r#"{"factor": 2.0, "width": 16}"#).expect("write model");
    let x = Tensor::from_f32("x", vec![1, 16], &[0.5; 16]);
    let direct_model = cyxwiz_plugin_example_scale::ScalePlugin
        .load(&scale_file, &LoadOptions::default())
        .expect("direct load");
    let direct = time(200_000, || {
        let out = cyxwiz_sdk::Model::infer(&direct_model, &[x.view()]).expect("infer");
        std::hint::black_box(out);
    });
    let lib =
        PluginLibrary::open(&lib_dir.join("libcyxwiz_plugin_example_scale.so")).expect("open");
    let abi_model = lib
        .load(&scale_file, &LoadOptions::default())
        .expect("load");
    let abi = time(200_000, || {
        std::hint::black_box(abi_model.infer(&[x.view()]).expect("infer"));
    });
    let worker = ModelWorker::spawn(
        "scale",
        "example-scale",
        Engine::Plain(
            lib.load(&scale_file, &LoadOptions::default())
                .expect("load"),
        ),
        1,
        64,
        1,
    )
    .expect("worker");
    let via_worker = time(50_000, || {
        std::hint::black_box(worker.infer_blocking(vec![x.clone()]).expect("infer"));
    });
    row(
        "scale 1x16 (trivial)",
        "direct (in-process)",
        direct,
        direct,
    );
    row("scale 1x16 (trivial)", "plugin ABI", abi, direct);
    row(
        "scale 1x16 (trivial)",
        "plugin ABI + model worker",
        via_worker,
        direct,
    );

    // 2. A real model through tract: squeezenet (light weights, full compute).
    let squeeze = cyxwiz_e2e::models_dir().join("onnx-light/light_squeezenet.onnx");
    let plan = tract_onnx::onnx()
        .model_for_path(&squeeze)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract direct");
    let n = 3 * 224 * 224;
    let values: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
    let tv: TValue = tract_onnx::prelude::Tensor::from(
        tract_ndarray::Array4::from_shape_vec((1, 3, 224, 224), values.clone()).expect("shape"),
    )
    .into();
    let direct = time(20, || {
        std::hint::black_box(plan.run(tvec![tv.clone()]).expect("run"));
    });
    let tract_lib =
        PluginLibrary::open(&lib_dir.join("libcyxwiz_plugin_onnx_tract.so")).expect("open");
    let model = tract_lib
        .load(&squeeze, &LoadOptions::default())
        .expect("load");
    let x = Tensor::from_f32("data_0", vec![1, 3, 224, 224], &values);
    let abi = time(20, || {
        std::hint::black_box(model.infer(&[x.view()]).expect("infer"));
    });
    let worker = ModelWorker::spawn(
        "squeezenet",
        "onnx-tract",
        Engine::Plain(
            tract_lib
                .load(&squeeze, &LoadOptions::default())
                .expect("load"),
        ),
        1,
        4,
        1,
    )
    .expect("worker");
    let via_worker = time(20, || {
        std::hint::black_box(worker.infer_blocking(vec![x.clone()]).expect("infer"));
    });
    row(
        "squeezenet 1x3x224x224",
        "tract direct (in-process)",
        direct,
        direct,
    );
    row(
        "squeezenet 1x3x224x224",
        "onnx-tract plugin ABI",
        abi,
        direct,
    );
    row(
        "squeezenet 1x3x224x224",
        "plugin ABI + model worker",
        via_worker,
        direct,
    );
}
