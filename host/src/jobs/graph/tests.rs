//! Unit tests for the model definition: both forms resolve the issue's MLP and a small CNN,
//! and every refusal names the node, layer or field at fault.

use serde_json::{json, Value};

use super::*;

fn fashion() -> DatasetShape {
    DatasetShape {
        sample: vec![1, 28, 28],
        classes: 10,
    }
}

fn digits() -> DatasetShape {
    DatasetShape {
        sample: vec![1, 8, 8],
        classes: 10,
    }
}

/// PROTOCOL.md's example, verbatim: links without pin indexes mean pin 0.
const PROTOCOL_MLP: &str = r#"{"version":"1.0","framework":0,"nodes":[{"id":1,"type":77,"name":"Dataset Input","parameters":{"dataset_name":"fashion","split":"train"}},
{"id":2,"type":15,"name":"Flatten","parameters":{}},{"id":3,"type":0,"name":"Dense (128)","parameters":{"units":"128"}},
{"id":4,"type":29,"name":"ReLU","parameters":{}},{"id":5,"type":14,"name":"Dropout","parameters":{"rate":"0.2"}},
{"id":6,"type":0,"name":"Dense (10)","parameters":{"units":"10"}},{"id":7,"type":39,"name":"Softmax","parameters":{}},
{"id":8,"type":52,"name":"CrossEntropyLoss","parameters":{"reduction":"mean"}},{"id":9,"type":60,"name":"Adam","parameters":{"learning_rate":"0.001"}}],
"links":[{"id":1,"from_node":1,"from_pin_index":0,"to_node":2,"to_pin_index":0},{"id":2,"from_node":2,"to_node":3},{"id":3,"from_node":3,"to_node":4},
{"id":4,"from_node":4,"to_node":5},{"id":5,"from_node":5,"to_node":6},{"id":6,"from_node":6,"to_node":7},
{"id":7,"from_node":7,"to_node":8,"to_pin_index":0},{"id":8,"from_node":1,"from_pin_index":1,"to_node":8,"to_pin_index":1},{"id":9,"from_node":8,"to_node":9}]}"#;

fn node(id: i64, ty: i64, name: &str, params: Value) -> Value {
    json!({"id": id, "type": ty, "name": name, "parameters": params, "pos_x": 100.0, "pos_y": 40.0})
}

fn link(id: i64, from: i64, from_pin: i64, to: i64, to_pin: i64) -> Value {
    json!({"id": id, "from_node": from, "from_pin": from * 10 + from_pin, "from_pin_index": from_pin,
           "to_node": to, "to_pin": to * 10 + 5 + to_pin, "to_pin_index": to_pin, "link_type": 0})
}

fn graph(nodes: &[Value], links: &[Value]) -> String {
    json!({"version": "1.0", "framework": 0, "nodes": nodes, "links": links}).to_string()
}

/// The issue's Done-means MLP with full link records: (nodes, links).
fn mlp() -> (Vec<Value>, Vec<Value>) {
    let nodes = vec![
        node(
            1,
            77,
            "Dataset Input",
            json!({"dataset_name": "fashion", "split": "train"}),
        ),
        node(2, 15, "Flatten", json!({})),
        node(
            3,
            0,
            "Dense (128)",
            json!({"units": "128", "activation": "none"}),
        ),
        node(4, 29, "ReLU", json!({})),
        node(5, 14, "Dropout", json!({"rate": "0.2"})),
        node(6, 0, "Dense (10)", json!({"units": "10"})),
        node(7, 39, "Softmax", json!({})),
        node(8, 52, "CrossEntropyLoss", json!({"reduction": "mean"})),
        node(
            9,
            60,
            "Adam",
            json!({"learning_rate": "0.001", "beta1": "0.9", "beta2": "0.999", "epsilon": "1e-8"}),
        ),
    ];
    let links = vec![
        link(1, 1, 0, 2, 0),
        link(2, 2, 0, 3, 0),
        link(3, 3, 0, 4, 0),
        link(4, 4, 0, 5, 0),
        link(5, 5, 0, 6, 0),
        link(6, 6, 0, 7, 0),
        link(7, 7, 0, 8, 0),
        link(8, 1, 1, 8, 1),
        link(9, 8, 0, 9, 0),
    ];
    (nodes, links)
}

/// The node with `id` in `nodes`.
fn at(nodes: &mut [Value], id: i64) -> &mut Value {
    nodes.iter_mut().find(|n| n["id"] == id).unwrap()
}

fn engine_err(nodes: &[Value], links: &[Value], dataset: &DatasetShape) -> String {
    parse_engine(&graph(nodes, links), dataset, None)
        .unwrap_err()
        .to_string()
}

fn plain_err(value: Value, dataset: &DatasetShape) -> String {
    parse_plain(&value.to_string(), dataset, None)
        .unwrap_err()
        .to_string()
}

fn kinds(spec: &ModelSpec) -> Vec<LayerKind> {
    spec.layers.iter().map(|l| l.kind.clone()).collect()
}

fn assert_mlp(spec: &ModelSpec) {
    assert_eq!(
        kinds(spec),
        vec![
            LayerKind::Flatten,
            LayerKind::Dense {
                inputs: 784,
                units: 128
            },
            LayerKind::Relu,
            LayerKind::Dropout { rate: 0.2 },
            LayerKind::Dense {
                inputs: 128,
                units: 10
            },
        ]
    );
    let shapes: Vec<_> = spec.layers.iter().map(|l| l.output_shape.clone()).collect();
    assert_eq!(
        shapes,
        [vec![784], vec![128], vec![128], vec![128], vec![10]]
    );
    assert_eq!(spec.parameter_count(), 101_770);
    assert_eq!(spec.output_shape(), [10]);
    assert_eq!(spec.loss, Loss::CrossEntropy);
    assert_eq!(spec.input_shape, [1, 28, 28]);
}

#[test]
fn the_issues_engine_mlp_resolves_with_softmax_folded() {
    for text in [PROTOCOL_MLP.to_owned(), graph(&mlp().0, &mlp().1)] {
        let spec = parse_model_definition(&text, &fashion(), None).unwrap();
        assert_mlp(&spec);
        assert!(spec.softmax_folded);
        let ids: Vec<_> = spec.layers.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["2", "3", "4", "5", "6"]);
        assert_eq!(spec.optimizer.kind, OptimizerKind::Adam);
        assert_eq!(spec.optimizer.learning_rate, 0.001);
        assert_eq!(spec.optimizer.beta2, Some(0.999));
        assert_eq!(spec.optimizer.momentum, None);
    }
}

#[test]
fn learning_rate_comes_from_the_job_then_the_optimizer_then_the_default() {
    let (mut nodes, links) = mlp();
    at(&mut nodes, 9)["parameters"]["learning_rate"] = json!("0.005");
    let text = graph(&nodes, &links);
    assert_eq!(
        parse_engine(&text, &fashion(), Some(0.02))
            .unwrap()
            .optimizer
            .learning_rate,
        0.02
    );
    assert_eq!(
        parse_engine(&text, &fashion(), None)
            .unwrap()
            .optimizer
            .learning_rate,
        0.005
    );
    at(&mut nodes, 9)["parameters"] = json!({});
    let spec = parse_engine(&graph(&nodes, &links), &fashion(), None).unwrap();
    assert_eq!(spec.optimizer.learning_rate, DEFAULT_LEARNING_RATE);
    let err = parse_engine(&text, &fashion(), Some(0.0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("learning_rate") && err.contains("out of range"),
        "{err}"
    );
}

#[test]
fn dense_units_default_to_the_number_in_the_engine_name() {
    let (mut nodes, links) = mlp();
    at(&mut nodes, 3)["parameters"] = json!({});
    at(&mut nodes, 3)["name"] = json!("Dense (64)");
    let spec = parse_engine(&graph(&nodes, &links), &fashion(), None).unwrap();
    assert_eq!(
        spec.layers[1].kind,
        LayerKind::Dense {
            inputs: 784,
            units: 64
        }
    );
}

/// DatasetInput → Conv2D(8, same) → BatchNorm → ReLU → MaxPool2D → Conv2D(16, valid) → ReLU
/// → Flatten → Dense(10) → CrossEntropy, SGD with momentum.
fn cnn() -> (Vec<Value>, Vec<Value>) {
    let nodes = vec![
        node(
            1,
            77,
            "Dataset Input",
            json!({"dataset_name": "digits", "split": "train"}),
        ),
        node(
            2,
            2,
            "Conv2D",
            json!({"filters": "8", "kernel_size": "3", "stride": "1", "padding": "same", "activation": "relu"}),
        ),
        node(
            3,
            10,
            "BatchNorm",
            json!({"epsilon": "1e-5", "momentum": "0.1"}),
        ),
        node(4, 29, "ReLU", json!({})),
        node(5, 5, "MaxPool2D", json!({"pool_size": "2", "stride": "2"})),
        node(
            6,
            2,
            "Conv2D",
            json!({"filters": "16", "kernel_size": "3", "padding": "valid"}),
        ),
        node(7, 29, "ReLU", json!({})),
        node(8, 15, "Flatten", json!({})),
        node(9, 0, "Dense (10)", json!({"units": "10"})),
        node(10, 52, "CrossEntropyLoss", json!({"reduction": "mean"})),
        node(
            11,
            59,
            "SGD",
            json!({"learning_rate": "0.05", "momentum": "0.9", "weight_decay": "0.0"}),
        ),
    ];
    let mut links: Vec<Value> = (1..9).map(|i| link(i, i, 0, i + 1, 0)).collect();
    links.push(link(9, 9, 0, 10, 0));
    links.push(link(10, 1, 1, 10, 1));
    links.push(link(11, 10, 0, 11, 0));
    (nodes, links)
}

fn assert_cnn(spec: &ModelSpec) {
    let shapes: Vec<_> = spec.layers.iter().map(|l| l.output_shape.clone()).collect();
    assert_eq!(
        shapes,
        [
            vec![8, 8, 8],
            vec![8, 8, 8],
            vec![8, 8, 8],
            vec![8, 4, 4],
            vec![16, 2, 2],
            vec![16, 2, 2],
            vec![64],
            vec![10]
        ]
    );
    assert_eq!(
        spec.layers[0].kind,
        LayerKind::Conv2d {
            in_channels: 1,
            filters: 8,
            kernel: 3,
            stride: 1,
            padding: 1
        }
    );
    assert_eq!(
        spec.layers[3].kind,
        LayerKind::MaxPool2d {
            kernel: 2,
            stride: 2
        }
    );
    // conv 8*1*9+8, batchnorm 2*8, conv 16*8*9+16, dense 64*10+10
    assert_eq!(spec.parameter_count(), 80 + 16 + 1168 + 650);
    assert!(!spec.softmax_folded);
}

#[test]
fn an_engine_cnn_for_digits_resolves() {
    let (nodes, links) = cnn();
    let spec = parse_engine(&graph(&nodes, &links), &digits(), None).unwrap();
    assert_cnn(&spec);
    assert_eq!(spec.optimizer.kind, OptimizerKind::Sgd);
    assert_eq!(spec.optimizer.learning_rate, 0.05);
    assert_eq!(spec.optimizer.momentum, Some(0.9));
}

#[test]
fn the_plain_form_resolves_the_same_models() {
    let mlp = json!({"input": [1, 28, 28], "layers": [
        {"type": "flatten"},
        {"type": "dense", "units": 128, "activation": "relu"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 10, "activation": "softmax"}],
        "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.001}});
    let spec = parse_model_definition(&mlp.to_string(), &fashion(), None).unwrap();
    assert_mlp(&spec);
    assert!(spec.softmax_folded);
    let ids: Vec<_> = spec.layers.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "layers.0",
            "layers.1",
            "layers.1.activation",
            "layers.2",
            "layers.3"
        ]
    );
    let engine = parse_engine(PROTOCOL_MLP, &fashion(), None).unwrap();
    assert_eq!(kinds(&spec), kinds(&engine));
    assert_eq!(spec.optimizer, engine.optimizer);

    let flat = json!({"input": [784], "layers": [{"type": "dense", "units": 128, "activation": "relu"},
        {"type": "dense", "units": 10}], "loss": "cross_entropy"});
    let spec = parse_plain(&flat.to_string(), &fashion(), None).unwrap();
    assert_eq!(spec.input_shape, [784]);
    assert_eq!(spec.parameter_count(), 101_770);
    assert!(!spec.softmax_folded);

    let cnn = json!({"layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same"},
        {"type": "batchnorm"}, {"type": "relu"},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "valid", "activation": "relu"},
        {"type": "flatten"}, {"type": "dense", "units": 10}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}});
    let spec = parse_plain(&cnn.to_string(), &digits(), None).unwrap();
    assert_cnn(&spec);
    let (nodes, links) = self::cnn();
    let engine = parse_engine(&graph(&nodes, &links), &digits(), None).unwrap();
    assert_eq!(kinds(&spec), kinds(&engine));
    assert_eq!(spec.optimizer, engine.optimizer);
}

#[test]
fn other_layers_losses_and_optimizers_resolve() {
    let value = json!({"input": [64], "layers": [
        {"type": "batchnorm"}, {"type": "dense", "units": 32, "activation": "gelu"},
        {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "tanh"}, {"type": "sigmoid"},
        {"type": "dense", "units": 10}, {"type": "softmax"}],
        "loss": "mse", "optimizer": {"type": "rmsprop", "learning_rate": 0.01}});
    let spec = parse_plain(&value.to_string(), &digits(), None).unwrap();
    assert_eq!(spec.loss, Loss::Mse);
    assert!(
        !spec.softmax_folded,
        "Softmax is only folded into cross-entropy"
    );
    assert_eq!(spec.layers.last().unwrap().kind, LayerKind::Softmax);
    assert_eq!(
        spec.layers[0].kind,
        LayerKind::BatchNorm {
            features: 64,
            epsilon: 1e-5,
            momentum: 0.1
        }
    );
    assert_eq!(
        spec.layers[3].kind,
        LayerKind::LeakyRelu {
            negative_slope: 0.2
        }
    );
    assert_eq!(spec.optimizer.kind, OptimizerKind::RmsProp);
    assert_eq!(spec.optimizer.beta2, Some(0.99));

    let (mut nodes, links) = mlp();
    *at(&mut nodes, 9) = node(9, 61, "AdamW", json!({"learning_rate": "0.002"}));
    *at(&mut nodes, 4) = node(4, 30, "LeakyReLU", json!({"negative_slope": "0.1"}));
    *at(&mut nodes, 5) = node(5, 74, "Identity", json!({}));
    let spec = parse_engine(&graph(&nodes, &links), &fashion(), None).unwrap();
    assert_eq!(spec.optimizer.kind, OptimizerKind::AdamW);
    assert_eq!(spec.optimizer.weight_decay, Some(0.01));
    assert_eq!(spec.layers.len(), 4, "Identity adds no layer");
}

fn expect(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "`{err}` should contain `{part}`");
    }
}

#[test]
fn refused_node_types_are_named() {
    for (ty, name, reason) in [
        (99, "", "node 5: unknown node type 99"),
        (-1, "", "node 5: unknown node type -1"),
        (73, "Lambda", "refused: it runs arbitrary code"),
        (84, "Subgraph", "refused"),
        (65, "StepLR", "not supported yet"),
        (71, "L2Regularization", "not supported yet"),
        (78, "DataLoader", "not supported yet"),
        (82, "Normalize", "not supported yet"),
        (17, "LSTM", "not supported yet"),
    ] {
        let (mut nodes, links) = mlp();
        *at(&mut nodes, 5) = node(5, ty, name, json!({}));
        let err = engine_err(&nodes, &links, &fashion());
        expect(&err, &["node 5", name, reason]);
    }
    let (mut nodes, links) = mlp();
    *at(&mut nodes, 8) = node(8, 53, "BCELoss", json!({}));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 8", "BCELoss", "not supported yet"],
    );
}

#[test]
fn broken_structure_is_refused_naming_the_node() {
    // A cycle: node 3 takes node 5's output, so 3 → 4 → 5 → 3.
    let (nodes, mut links) = mlp();
    links[1] = link(2, 5, 0, 3, 0);
    links[4] = link(5, 5, 0, 6, 0);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 3", "on a cycle"],
    );
    // A self-loop.
    let (mut nodes, mut links) = mlp();
    nodes.push(node(20, 29, "ReLU", json!({})));
    links.push(link(20, 20, 0, 20, 0));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 20", "on a cycle"],
    );

    // Dangling links.
    let (nodes, mut links) = mlp();
    links[2] = link(3, 3, 0, 42, 0);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["link 3", "to_node 42 does not exist"],
    );
    let (nodes, mut links) = mlp();
    links[0] = link(1, 1, 2, 2, 0);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["link 1", "node 1 has no output pin 2"],
    );
    let (nodes, mut links) = mlp();
    links[2] = link(3, 3, 0, 4, 1);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["link 3", "node 4 has no input pin 1"],
    );

    // Branching and merging.
    let (mut nodes, mut links) = mlp();
    nodes.push(node(10, 0, "Dense (10)", json!({"units": "10"})));
    links.push(link(10, 3, 0, 10, 0));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 3", "feeds 2 nodes", "branching"],
    );
    let (nodes, mut links) = mlp();
    links.push(link(10, 2, 0, 4, 0));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["link 10", "input pin 0 of node 4 already has a link"],
    );

    // A layer off the chain, a duplicate id, an unlinked output.
    let (mut nodes, links) = mlp();
    nodes.push(node(11, 0, "Dense (32)", json!({})));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 11", "not on the chain"],
    );
    let (mut nodes, links) = mlp();
    nodes.push(node(4, 29, "ReLU", json!({})));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 4", "a second node has this id"],
    );
    let (nodes, mut links) = mlp();
    links.remove(3);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 4", "output is not linked"],
    );

    // Labels must reach the loss's targets.
    let (nodes, mut links) = mlp();
    links.remove(7);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 8", "targets (pin 1)"],
    );
    // An optimizer fed by something other than the loss.
    let (nodes, mut links) = mlp();
    links[6] = link(7, 7, 0, 9, 0);
    links.remove(8);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 9", "takes the loss, not the output of node 7"],
    );
    let (mut nodes, mut links) = mlp();
    nodes.push(node(20, 29, "ReLU", json!({})));
    links[8] = link(9, 20, 0, 9, 0);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 9", "takes node 20's output"],
    );
}

#[test]
fn missing_pieces_are_refused() {
    let (mut nodes, mut links) = mlp();
    nodes.retain(|n| n["id"] != 8);
    links.retain(|l| l["to_node"] != 8 && l["from_node"] != 8);
    expect(&engine_err(&nodes, &links, &fashion()), &["no loss node"]);
    let (mut nodes, mut links) = mlp();
    nodes.retain(|n| n["id"] != 1);
    links.retain(|l| l["from_node"] != 1);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["no DatasetInput"],
    );
    let (mut nodes, links) = mlp();
    nodes.push(node(12, 77, "Dataset Input", json!({})));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 12", "a second DatasetInput"],
    );
    let plain = json!({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]});
    expect(&plain_err(plain, &fashion()), &["no loss"]);
    let err = parse_model_definition(r#"{"model": 1}"#, &fashion(), None).unwrap_err();
    expect(&err.to_string(), &["expected an Engine graph"]);
    let err = parse_model_definition("{\"nodes\": [", &fashion(), None).unwrap_err();
    assert!(matches!(err, GraphError::Json(_)), "{err}");
}

#[test]
fn shapes_that_do_not_fit_are_refused() {
    // Dense straight after Conv2D: a Flatten is required.
    let (mut nodes, mut links) = cnn();
    nodes.retain(|n| n["id"] != 8);
    links.retain(|l| l["to_node"] != 8 && l["from_node"] != 8);
    links.push(link(12, 7, 0, 9, 0));
    expect(
        &engine_err(&nodes, &links, &digits()),
        &["node 9", "Dense needs a flat input", "Flatten"],
    );
    // Conv2D on a flat input.
    let flat = DatasetShape {
        sample: vec![64],
        classes: 10,
    };
    let (nodes, links) = cnn();
    expect(
        &engine_err(&nodes, &links, &flat),
        &["node 2", "Conv2D needs an image input"],
    );
    let plain =
        json!({"input": [784], "layers": [{"type": "conv2d", "filters": 4}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[0]", "Conv2D needs an image input"],
    );
    // A kernel larger than its input.
    let (mut nodes, links) = cnn();
    at(&mut nodes, 6)["parameters"]["kernel_size"] = json!("5");
    expect(
        &engine_err(&nodes, &links, &digits()),
        &[
            "node 6",
            "kernel_size: 5 is larger than the padded input 4x4",
        ],
    );
    let (mut nodes, links) = cnn();
    at(&mut nodes, 5)["parameters"]["pool_size"] = json!("9");
    expect(
        &engine_err(&nodes, &links, &digits()),
        &["node 5", "pool_size: 9 is larger"],
    );
    // `same` padding with an even kernel.
    let (mut nodes, links) = cnn();
    at(&mut nodes, 2)["parameters"]["kernel_size"] = json!("4");
    expect(
        &engine_err(&nodes, &links, &digits()),
        &["node 2", "padding", "odd kernel"],
    );
    // The last layer's width must be the class count.
    let (mut nodes, links) = mlp();
    at(&mut nodes, 6)["parameters"]["units"] = json!("12");
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 8", "predictions of shape [10]", "node 6 gives [12]"],
    );
    // Softmax on an image.
    let plain = json!({"layers": [{"type": "softmax"}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[0]", "Softmax needs a flat input"],
    );
    // Plain input of the wrong size.
    let plain = json!({"input": [100], "layers": [{"type": "dense", "units": 10}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["`input`", "as many values"],
    );
    // A dataset shape the models cannot take.
    let bad = DatasetShape {
        sample: vec![28, 28],
        classes: 10,
    };
    expect(
        &parse_engine(PROTOCOL_MLP, &bad, None)
            .unwrap_err()
            .to_string(),
        &["`dataset`", "[28, 28]"],
    );
}

#[test]
fn bad_parameter_values_are_refused_naming_the_key() {
    for (id, key, value, message) in [
        (3, "units", "12x", "node 3: units: `12x` is not an integer"),
        (3, "units", "0", "node 3: units: 0 is out of range"),
        (
            3,
            "units",
            "2000000",
            "node 3: units: 2000000 is out of range",
        ),
        (3, "units", "-5", "node 3: units: `-5` is not an integer"),
        (
            5,
            "rate",
            "1.0",
            "node 5: rate: 1.0 is out of range (allowed [0, 1))",
        ),
        (5, "rate", "-0.1", "node 5: rate: -0.1 is out of range"),
        (5, "rate", "half", "node 5: rate: `half` is not a number"),
        (5, "rate", "NaN", "node 5: rate: NaN is out of range"),
        (
            9,
            "learning_rate",
            "abc",
            "node 9: learning_rate: `abc` is not a number",
        ),
        (
            9,
            "learning_rate",
            "0",
            "node 9: learning_rate: 0 is out of range",
        ),
        (9, "beta1", "1.5", "node 9: beta1: 1.5 is out of range"),
    ] {
        let (mut nodes, links) = mlp();
        at(&mut nodes, id)["parameters"][key] = json!(value);
        expect(&engine_err(&nodes, &links, &fashion()), &[message]);
    }
    for (id, key, value, message) in [
        (
            2,
            "kernel_size",
            "0",
            "node 2: kernel_size: 0 is out of range",
        ),
        (
            2,
            "padding",
            "wide",
            "node 2: padding: `wide` is not `same`, `valid` or an integer",
        ),
        (2, "stride", "0", "node 2: stride: 0 is out of range"),
        (3, "epsilon", "0", "node 3: epsilon: 0 is out of range"),
        (11, "momentum", "1", "node 11: momentum: 1 is out of range"),
    ] {
        let (mut nodes, links) = cnn();
        at(&mut nodes, id)["parameters"][key] = json!(value);
        expect(&engine_err(&nodes, &links, &digits()), &[message]);
    }
    let (mut nodes, links) = mlp();
    at(&mut nodes, 3)["parameters"]["units"] = json!(["128"]);
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["node 3: units: must be a string or a number"],
    );
    // Plain form: typos and unknown types.
    let plain =
        json!({"layers": [{"type": "flatten"}, {"type": "dense", "unit": 10}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[1]: unit: unknown key"],
    );
    let plain = json!({"layers": [{"type": "flatten"}, {"type": "dense"}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[1]: units: is required"],
    );
    let plain = json!({"layers": [{"type": "flatten"}, {"type": "lstm"}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[1]", "`lstm`", "not supported"],
    );
    let plain = json!({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "swish"}], "loss": "mse"});
    expect(
        &plain_err(plain, &fashion()),
        &["layers[1]: activation: `swish`"],
    );
    let plain =
        json!({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}], "loss": "hinge"});
    expect(&plain_err(plain, &fashion()), &["`loss`", "`hinge`"]);
    let plain = json!({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}], "loss": "mse",
        "optimizer": {"type": "lion"}});
    expect(&plain_err(plain, &fashion()), &["`optimizer`", "`lion`"]);
}

#[test]
fn size_bounds_are_enforced() {
    // 784 × 1,000,000 weights is far past the parameter bound.
    let (mut nodes, links) = mlp();
    at(&mut nodes, 3)["parameters"]["units"] = json!("1000000");
    let err = parse_engine(&graph(&nodes, &links), &fashion(), None).unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::TooManyParameters {
                max: MAX_PARAMETERS,
                ..
            }
        ),
        "{err}"
    );

    let (mut nodes, links) = mlp();
    nodes.extend((100..100 + MAX_NODES as i64).map(|id| node(id, 29, "ReLU", json!({}))));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["1009 nodes", "at most 1000"],
    );
    let (nodes, mut links) = mlp();
    links.extend((0..MAX_LINKS as i64).map(|i| link(100 + i, 1, 0, 2, 0)));
    expect(
        &engine_err(&nodes, &links, &fashion()),
        &["4009 links", "at most 4000"],
    );
    let layers: Vec<Value> = (0..=MAX_NODES).map(|_| json!({"type": "relu"})).collect();
    expect(
        &plain_err(json!({"layers": layers, "loss": "mse"}), &fashion()),
        &["1001 layers"],
    );

    let long = format!(
        "{{\"layers\": [], \"pad\": \"{}\"}}",
        "x".repeat(MAX_DEFINITION_BYTES)
    );
    let err = parse_model_definition(&long, &fashion(), None).unwrap_err();
    assert!(matches!(err, GraphError::TooLong { .. }), "{err}");
}
