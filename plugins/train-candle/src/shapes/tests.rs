//! Spec checks: good specs pass, each kind of misfit is refused naming the layer.

use super::*;
use cyxwiz_sdk::training::{Layer, Loss, Optimizer, OptimizerKind};

pub(crate) fn layer(id: &str, kind: LayerKind, output_shape: Vec<usize>) -> Layer {
    Layer {
        id: id.into(),
        origin: format!("node {id}"),
        kind,
        output_shape,
    }
}

pub(crate) fn spec(input_shape: Vec<usize>, classes: usize, layers: Vec<Layer>) -> ModelSpec {
    ModelSpec {
        input_shape,
        classes,
        layers,
        loss: Loss::CrossEntropy,
        softmax_folded: true,
        optimizer: Optimizer {
            kind: OptimizerKind::Adam,
            learning_rate: 0.01,
            momentum: None,
            beta1: Some(0.9),
            beta2: Some(0.999),
            epsilon: Some(1e-8),
            weight_decay: Some(0.0),
        },
    }
}

fn cnn() -> ModelSpec {
    spec(
        vec![1, 8, 6],
        3,
        vec![
            layer(
                "c",
                LayerKind::Conv2d {
                    in_channels: 1,
                    filters: 4,
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                },
                vec![4, 4, 3],
            ),
            layer(
                "bn",
                LayerKind::BatchNorm {
                    features: 4,
                    epsilon: 1e-5,
                    momentum: 0.1,
                },
                vec![4, 4, 3],
            ),
            layer("r", LayerKind::Relu, vec![4, 4, 3]),
            layer(
                "p",
                LayerKind::MaxPool2d {
                    kernel: 2,
                    stride: 1,
                },
                vec![4, 3, 2],
            ),
            layer("f", LayerKind::Flatten, vec![24]),
            layer(
                "d",
                LayerKind::Dense {
                    inputs: 24,
                    units: 3,
                },
                vec![3],
            ),
        ],
    )
}

#[test]
fn a_chaining_cnn_passes_and_lists_its_tensors() {
    let s = cnn();
    check(&s).unwrap();
    let names = tensors(&s);
    assert_eq!(names[0], ("c.weight".into(), vec![4, 1, 3, 3], true));
    assert_eq!(names[4], ("bn.running_mean".into(), vec![4], false));
    assert_eq!(names.len(), 8);
    // The same names and shapes as the SDK's initial parameters.
    let init = cyxwiz_sdk::training::initial_parameters(&s, 1);
    let from_sdk: Vec<_> = init
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let ours: Vec<_> = names
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    assert_eq!(from_sdk, ours);
}

#[test]
fn misfits_are_refused_naming_the_layer() {
    let dense5 = spec(
        vec![8],
        3,
        vec![layer(
            "7",
            LayerKind::Dense {
                inputs: 5,
                units: 3,
            },
            vec![3],
        )],
    );
    let err = check(&dense5).unwrap_err();
    assert_eq!(err.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT);
    assert!(
        err.message.contains("node 7") && err.message.contains("5 input"),
        "{err}"
    );

    let mut wrong_out = cnn();
    wrong_out.layers[3].output_shape = vec![4, 2, 2];
    let err = check(&wrong_out).unwrap_err();
    assert!(
        err.message.contains("node p") && err.message.contains("[4, 3, 2]"),
        "{err}"
    );

    let mut classes = cnn();
    classes.classes = 4;
    assert!(check(&classes).unwrap_err().message.contains("[4]"));

    let too_big_kernel = spec(
        vec![1, 2, 2],
        1,
        vec![layer(
            "c",
            LayerKind::Conv2d {
                in_channels: 1,
                filters: 1,
                kernel: 5,
                stride: 1,
                padding: 0,
            },
            vec![1, 1, 1],
        )],
    );
    assert!(check(&too_big_kernel)
        .unwrap_err()
        .message
        .contains("does not fit"));

    let dense_on_image = spec(
        vec![1, 2, 2],
        4,
        vec![layer(
            "d",
            LayerKind::Dense {
                inputs: 4,
                units: 4,
            },
            vec![4],
        )],
    );
    assert!(check(&dense_on_image).is_err());

    let huge = spec(
        vec![1 << 20],
        1 << 12,
        vec![layer(
            "d",
            LayerKind::Dense {
                inputs: 1 << 20,
                units: 1 << 12,
            },
            vec![1 << 12],
        )],
    );
    assert!(check(&huge).unwrap_err().message.contains("parameters"));
    assert!(check(&spec(vec![0], 1, vec![])).is_err());
}
