//! Weights files: a good one serves what the network computed; every malformed one is
//! refused with INVALID_INPUT naming the problem.

use super::*;
use crate::shapes::tests::{layer, spec};
use cyxwiz_sdk::training::{initial_parameters, LayerKind, NamedTensor};
use cyxwiz_sdk::{ErrorKind, Model};

fn cnn() -> ModelSpec {
    spec(
        vec![1, 4, 4],
        2,
        vec![
            layer(
                "c",
                LayerKind::Conv2d {
                    in_channels: 1,
                    filters: 2,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                },
                vec![2, 4, 4],
            ),
            layer(
                "b",
                LayerKind::BatchNorm {
                    features: 2,
                    epsilon: 1e-5,
                    momentum: 0.1,
                },
                vec![2, 4, 4],
            ),
            layer(
                "a",
                LayerKind::AvgPool2d {
                    kernel: 2,
                    stride: 2,
                },
                vec![2, 2, 2],
            ),
            layer("f", LayerKind::Flatten, vec![8]),
            layer(
                "d",
                LayerKind::Dense {
                    inputs: 8,
                    units: 2,
                },
                vec![2],
            ),
        ],
    )
}

fn file(spec: &ModelSpec, tensors: Vec<NamedTensor>) -> TensorFile {
    let mut f = TensorFile {
        tensors,
        metadata: Default::default(),
    };
    f.metadata
        .insert(MODEL_KEY.into(), serde_json::to_string(spec).unwrap());
    f
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load(path: &Path) -> Result<TrainedModel> {
    TrainedModel::load(path, &LoadOptions::default())
}

#[test]
fn a_weights_file_serves_logits_and_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let s = cnn();
    let mut tensors = initial_parameters(&s, 4);
    // Non-trivial running statistics, so evaluation mode is visible.
    for t in &mut tensors {
        if t.name == "b.running_var" {
            t.data = vec![4.0, 0.25];
        }
    }
    let path = write(
        dir.path(),
        "w.safetensors",
        &file(&s, tensors.clone()).encode(),
    );
    let model = load(&path).unwrap();
    let info = model.info().unwrap();
    assert_eq!(info.inputs[0].shape, vec![-1, 1, 4, 4]);
    assert_eq!(info.outputs[1].shape, vec![-1, 2]);
    let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.3).sin()).collect();
    let input = cyxwiz_sdk::Tensor::from_f32("input", vec![2, 1, 4, 4], &x);
    let out = model.infer(&[input.view()]).unwrap();
    assert_eq!(out[0].shape, vec![2, 2]);
    // The same forward pass as training's evaluation, and probabilities are its softmax.
    let g = Graph::new(&s).unwrap();
    let t = |name: &str| {
        let nt = tensors.iter().find(|t| t.name == name).unwrap();
        Tensor::from_slice(&nt.data, nt.shape.as_slice(), &Device::Cpu).unwrap()
    };
    let params: Vec<_> = g.trainable.iter().map(|(n, _)| t(n)).collect();
    let running: Vec<_> = g.running.iter().map(|(n, _)| t(n)).collect();
    let want = g
        .forward(
            g.input(&x, &[2, 1, 4, 4]).unwrap(),
            &params,
            &running,
            Mode::Eval,
            &mut Vec::new(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(out[0].to_f32_vec().unwrap(), want);
    let p = out[1].to_f32_vec().unwrap();
    let e: Vec<f64> = want.iter().map(|v| f64::from(*v).exp()).collect();
    assert!((f64::from(p[0]) - e[0] / (e[0] + e[1])).abs() < 1e-6);
    // Batches over the bound are refused before any work.
    let big = cyxwiz_sdk::Tensor::from_f32("input", vec![4097, 1, 4, 4], &vec![0.0; 4097 * 16]);
    let err = model.infer(&[big.view()]).unwrap_err();
    assert!(err.message.contains("4096"), "{err}");
}

#[test]
fn malformed_weights_files_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = cnn();
    let good = file(&s, initial_parameters(&s, 4));
    let bytes = good.encode();
    let mut no_spec = good.clone();
    no_spec.metadata.clear();
    let mut missing = good.clone();
    missing.tensors.retain(|t| t.name != "d.bias");
    let mut misshaped = good.clone();
    misshaped.tensors[0].shape = vec![2, 1, 9];
    let mut extra = good.clone();
    extra
        .tensors
        .push(NamedTensor::new("z.weight", vec![1], vec![0.0]));
    let mut chain = s.clone();
    chain.layers[4].kind = LayerKind::Dense {
        inputs: 7,
        units: 2,
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            bytes[..bytes.len() - 10].to_vec(),
            "safetensors",
        ),
        ("short", bytes[..5].to_vec(), "truncated"),
        ("no spec", no_spec.encode(), "cyxwiz.model"),
        ("missing", missing.encode(), "d.bias is missing"),
        ("misshaped", misshaped.encode(), "c.weight has shape"),
        ("extra", extra.encode(), "z.weight"),
        (
            "bad chain",
            file(&chain, initial_parameters(&chain, 1)).encode(),
            "7 input",
        ),
        (
            "padded",
            [bytes.clone(), vec![0; 4096]].concat(),
            "more than its model",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = write(
            dir.path(),
            &format!("{}.safetensors", name.replace(' ', "-")),
            &bytes,
        );
        let err = load(&path).err().unwrap_or_else(|| panic!("{name} loaded"));
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{name}: {err}");
        assert!(err.message.contains(says), "{name}: {err}");
    }
    // A checkpoint (with optimizer state) loads too: the state is ignored.
    let mut checkpoint = good.clone();
    checkpoint.tensors.push(NamedTensor::new(
        "state.c.weight.exp_avg",
        vec![2, 1, 3, 3],
        vec![0.0; 18],
    ));
    assert!(load(&write(dir.path(), "ckpt.safetensors", &checkpoint.encode())).is_ok());
    let err = TrainedModel::load(
        &write(dir.path(), "ok.safetensors", &bytes),
        &LoadOptions {
            device: "cuda:0".into(),
            ..LoadOptions::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind, ErrorKind::UNSUPPORTED);
    assert_eq!(
        load(&dir.path().join("nope.safetensors"))
            .err()
            .unwrap()
            .kind,
        ErrorKind::NOT_FOUND
    );
}
