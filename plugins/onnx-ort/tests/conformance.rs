//! onnx-ort through the SDK conformance kit on the real models of MODELS.md, with ONNX Runtime
//! 1.31.1 from its PyPI wheel (fetched by `scripts/fetch-models.py`), and its outputs compared
//! with onnx-tract's on every model both load.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, DType, LoadOptions, Tensor};
use cyxwiz_testkit::{allclose, cdylib_path, Conformance, Sample};
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

fn models() -> PathBuf {
    let dir = cyxwiz_e2e::models_dir();
    assert!(
        dir.join("runtimes/onnxruntime").is_dir(),
        "run scripts/fetch-models.py"
    );
    dir
}

fn options() -> LoadOptions {
    let library = models().join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    LoadOptions {
        options: json!({"library": library}),
        ..LoadOptions::default()
    }
}

fn reference(path: &std::path::Path) -> Tensor {
    let proto = tract_onnx::tensor::proto_from_reader(std::fs::File::open(path).unwrap()).unwrap();
    let tensor = tract_onnx::tensor::load_tensor(
        &tract_onnx::data_resolver::FopenDataResolver,
        &proto,
        None,
    )
    .unwrap();
    Tensor {
        name: proto.name.clone(),
        dtype: DType::F32,
        shape: tensor.shape().iter().map(|d| *d as i64).collect(),
        data: tensor.as_bytes().to_vec(),
    }
}

fn classifier() -> PathBuf {
    models().join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

#[test]
fn onnx_ort_passes_the_testkit_on_real_models() {
    let mut suite = Conformance::new(cdylib_path("cyxwiz_plugin_onnx_ort"))
        .sample(Sample::new(classifier()).options(options()));
    for name in LIGHT {
        let dir = models().join("onnx-light");
        let expected = reference(&dir.join(format!("light_{name}_output_0.pb")));
        suite = suite.sample(
            Sample::new(dir.join(format!("light_{name}.onnx")))
                .options(options())
                .expect(vec![expected], 2e-3, 1e-6),
        );
    }
    let report = suite.run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn outputs_equal_onnx_tracts() {
    let ort = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    let tract = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_tract")).unwrap();
    let mut paths = vec![classifier()];
    paths.extend(
        LIGHT
            .iter()
            .map(|n| models().join(format!("onnx-light/light_{n}.onnx"))),
    );
    for path in paths {
        let a = ort.load(&path, &options()).unwrap();
        let b = tract.load(&path, &LoadOptions::default()).unwrap();
        // A batch of two varied inputs with every dynamic dimension made concrete.
        let spec = &a.info().inputs[0];
        let shape: Vec<i64> = spec
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if *d >= 0 {
                    *d
                } else if i == 0 {
                    2
                } else if i == 2 {
                    48
                } else {
                    192
                }
            })
            .collect();
        let n: i64 = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let x = Tensor::from_f32(spec.name.clone(), shape, &values);
        let out_a = a.infer(&[x.view()]).unwrap();
        let out_b = b.infer(&[x.view()]).unwrap();
        assert_eq!(out_a.len(), out_b.len(), "{}", path.display());
        for (ta, tb) in out_a.iter().zip(&out_b) {
            allclose(ta, tb, 1e-3, 1e-5).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// The CUDA path on a machine without CUDA (this test double is the machine itself: the
/// PyPI `onnxruntime` library has no CUDA provider and there is no GPU here): a `cuda`
/// device loads on the CPU with the reason in the metadata, `auto` quietly so, and the
/// outputs are the CPU's. The GPU path itself needs an NVIDIA machine with `onnxruntime-gpu`.
#[test]
fn cuda_device_falls_back_to_the_cpu_with_the_reason() {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    let on = |device: &str| {
        let mut options = options();
        options.device = device.to_string();
        lib.load(&classifier(), &options)
    };
    let provider = |model: &cyxwiz_plugin_host::LoadedModel| {
        model
            .info()
            .metadata
            .iter()
            .find(|(k, _)| k == "execution_provider")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let cpu = on("cpu").unwrap();
    assert_eq!(provider(&cpu), "CPU");
    let cuda = on("cuda:0").unwrap();
    let why = provider(&cuda);
    assert!(
        why.starts_with(
            "CPU (CUDA:0 unusable: this ONNX Runtime build has no CUDA execution provider"
        ),
        "{why}"
    );
    assert_eq!(provider(&on("auto").unwrap()), "CPU");
    let err = on("tpu:0").unwrap_err();
    assert_eq!(err.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT, "{err}");
    let n = 3 * 48 * 192;
    let values: Vec<f32> = (0..n).map(|i| (i % 17) as f32 / 17.0).collect();
    let x = Tensor::from_f32("x", vec![1, 3, 48, 192], &values);
    assert_eq!(
        cpu.infer(&[x.view()]).unwrap()[0].data,
        cuda.infer(&[x.view()]).unwrap()[0].data
    );
}
