//! The CyxWiz Engine's node-graph JSON: its node-type table, link and pin checks, cycle
//! detection, and the walk from DatasetInput to the loss that yields the layers in order.
//! Shapes and parameter values are left to `shapes`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{GraphError, Site};
use super::shapes::{assemble, LayerType, Pending, PendingOptimizer};
use super::{MAX_LINKS, MAX_NODES};
use cyxwiz_sdk::training::{DatasetShape, Loss, ModelSpec, OptimizerKind};

/// The Engine's `NodeType` names, indexed by value (PROTOCOL.md, "Training jobs").
const NAMES: [&str; 85] = [
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalMaxPool",
    "GlobalAvgPool",
    "AdaptiveAvgPool",
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm",
    "Dropout",
    "Flatten",
    "RNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "TimeDistributed",
    "Embedding",
    "MultiHeadAttention",
    "SelfAttention",
    "CrossAttention",
    "LinearAttention",
    "TransformerEncoder",
    "TransformerDecoder",
    "PositionalEncoding",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "SELU",
    "GELU",
    "Swish",
    "Mish",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Reshape",
    "Permute",
    "Squeeze",
    "Unsqueeze",
    "View",
    "Split",
    "Concatenate",
    "Add",
    "Multiply",
    "Average",
    "Output",
    "MSELoss",
    "CrossEntropyLoss",
    "BCELoss",
    "BCEWithLogits",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "NLLLoss",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "NAdam",
    "StepLR",
    "CosineAnnealing",
    "ReduceOnPlateau",
    "ExponentialLR",
    "WarmupScheduler",
    "L1Regularization",
    "L2Regularization",
    "ElasticNet",
    "Lambda",
    "Identity",
    "Constant",
    "Parameter",
    "DatasetInput",
    "DataLoader",
    "Augmentation",
    "DataSplit",
    "TensorReshape",
    "Normalize",
    "OneHotEncode",
    "Subgraph",
];

/// The model definition as the Engine sends it (fields this node does not use are ignored).
#[derive(Deserialize)]
struct EngineGraph {
    nodes: Vec<EngineNode>,
    #[serde(default)]
    links: Vec<EngineLink>,
}

#[derive(Deserialize)]
struct EngineNode {
    id: i64,
    #[serde(rename = "type")]
    type_id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Deserialize)]
struct EngineLink {
    #[serde(default)]
    id: Option<i64>,
    from_node: i64,
    #[serde(default)]
    from_pin_index: i64,
    to_node: i64,
    #[serde(default)]
    to_pin_index: i64,
}

/// What a node does in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Input,
    Layer(LayerType),
    /// Output and Identity: on the chain, no layer.
    PassThrough,
    Loss(Loss),
    Optimizer(OptimizerKind),
}

impl Role {
    /// Output pins it has.
    fn outputs(self) -> i64 {
        match self {
            Role::Input => 2,
            Role::Optimizer(_) => 0,
            _ => 1,
        }
    }

    /// Input pins it has.
    fn inputs(self) -> i64 {
        match self {
            Role::Input => 0,
            Role::Loss(_) => 2,
            _ => 1,
        }
    }
}

/// A node's role, or why it is refused.
fn classify(node: &EngineNode) -> Result<Role, GraphError> {
    let name = usize::try_from(node.type_id)
        .ok()
        .and_then(|i| NAMES.get(i))
        .ok_or(GraphError::UnknownType {
            node: node.id,
            type_id: node.type_id,
        })?;
    let layer = |ty| Ok(Role::Layer(ty));
    let refuse = |reason| {
        Err(GraphError::Unsupported {
            at: Site::Node(node.id),
            name: (*name).to_owned(),
            reason,
        })
    };
    match node.type_id {
        0 => layer(LayerType::Dense),
        2 => layer(LayerType::Conv2d),
        5 => layer(LayerType::MaxPool2d),
        6 => layer(LayerType::AvgPool2d),
        10 => layer(LayerType::BatchNorm),
        14 => layer(LayerType::Dropout),
        15 => layer(LayerType::Flatten),
        29 => layer(LayerType::Relu),
        30 => layer(LayerType::LeakyRelu),
        34 => layer(LayerType::Gelu),
        37 => layer(LayerType::Sigmoid),
        38 => layer(LayerType::Tanh),
        39 => layer(LayerType::Softmax),
        50 | 74 => Ok(Role::PassThrough),
        51 => Ok(Role::Loss(Loss::Mse)),
        52 => Ok(Role::Loss(Loss::CrossEntropy)),
        59 => Ok(Role::Optimizer(OptimizerKind::Sgd)),
        60 => Ok(Role::Optimizer(OptimizerKind::Adam)),
        61 => Ok(Role::Optimizer(OptimizerKind::AdamW)),
        62 => Ok(Role::Optimizer(OptimizerKind::RmsProp)),
        77 => Ok(Role::Input),
        73 => refuse("refused: it runs arbitrary code"),
        84 => refuse("refused: inline the subgraph's nodes into the graph"),
        53..=58 => refuse("a loss that is not supported yet (use CrossEntropyLoss or MSELoss)"),
        63 | 64 => {
            refuse("an optimizer that is not supported yet (use SGD, Adam, AdamW or RMSprop)")
        }
        65..=69 => refuse("a scheduler, not supported yet"),
        70..=72 => refuse("a regularization node, not supported yet"),
        78..=83 => refuse("a data-pipeline node, not supported yet (only DatasetInput is)"),
        _ => refuse("not supported yet"),
    }
}

/// Dense's `units` default: the number in a name like "Dense (128)", else 128 (the Engine's).
fn units_from_name(name: &str) -> usize {
    name.split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(128)
}

/// Finds a node on a cycle among `left` (nodes Kahn's algorithm could not order).
fn on_cycle(left: &BTreeSet<i64>, preds: &BTreeMap<i64, Vec<i64>>) -> i64 {
    let Some(&start) = left.iter().next() else {
        return 0;
    };
    let mut seen = BTreeSet::new();
    let mut cur = start;
    // Every node left has a predecessor left, so this walk must revisit one: that one is on a cycle.
    while seen.insert(cur) {
        match preds
            .get(&cur)
            .and_then(|p| p.iter().find(|n| left.contains(n)))
        {
            Some(&next) => cur = next,
            None => break,
        }
    }
    cur
}

/// Parses and validates an Engine node graph (see the module doc for the rules).
pub fn parse_engine(
    json: &str,
    dataset: &DatasetShape,
    job_learning_rate: Option<f64>,
) -> Result<ModelSpec, GraphError> {
    let graph: EngineGraph =
        serde_json::from_str(json).map_err(|e| GraphError::Json(e.to_string()))?;
    for (what, count, max) in [
        ("nodes", graph.nodes.len(), MAX_NODES),
        ("links", graph.links.len(), MAX_LINKS),
    ] {
        if count > max {
            return Err(GraphError::TooLarge { what, count, max });
        }
    }
    let mut nodes: BTreeMap<i64, (&EngineNode, Role)> = BTreeMap::new();
    for node in &graph.nodes {
        let role = classify(node)?;
        if nodes.insert(node.id, (node, role)).is_some() {
            return Err(GraphError::structure(
                &Site::Node(node.id),
                "a second node has this id",
            ));
        }
    }

    // Links: endpoints exist, pins exist, one link per input pin.
    let mut source: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    let mut consumers: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    let mut preds: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (index, link) in graph.links.iter().enumerate() {
        let lid = link.id.unwrap_or(index as i64);
        let bad = |reason: String| GraphError::Link { link: lid, reason };
        let (from, to) = (link.from_node, link.to_node);
        let from_role = nodes
            .get(&from)
            .ok_or_else(|| bad(format!("from_node {from} does not exist")))?
            .1;
        let to_role = nodes
            .get(&to)
            .ok_or_else(|| bad(format!("to_node {to} does not exist")))?
            .1;
        if !(0..from_role.outputs()).contains(&link.from_pin_index) {
            return Err(bad(format!(
                "node {from} has no output pin {} (it has {})",
                link.from_pin_index,
                from_role.outputs()
            )));
        }
        if !(0..to_role.inputs()).contains(&link.to_pin_index) {
            return Err(bad(format!(
                "node {to} has no input pin {} (it has {})",
                link.to_pin_index,
                to_role.inputs()
            )));
        }
        let target = (to, link.to_pin_index);
        if source.insert(target, (from, link.from_pin_index)).is_some() {
            return Err(bad(format!(
                "input pin {} of node {to} already has a link; merging inputs is not supported yet",
                link.to_pin_index
            )));
        }
        consumers
            .entry((from, link.from_pin_index))
            .or_default()
            .push(target);
        preds.entry(to).or_default().push(from);
    }

    // Cycles (Kahn's algorithm).
    let mut indegree: BTreeMap<i64, usize> = nodes.keys().map(|&id| (id, 0)).collect();
    for targets in consumers.values() {
        for (to, _) in targets {
            *indegree.entry(*to).or_default() += 1;
        }
    }
    let mut ready: Vec<i64> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut left: BTreeSet<i64> = nodes.keys().copied().collect();
    while let Some(id) = ready.pop() {
        left.remove(&id);
        for pin in 0..2 {
            for (to, _) in consumers.get(&(id, pin)).into_iter().flatten() {
                if let Some(d) = indegree.get_mut(to) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(*to);
                    }
                }
            }
        }
    }
    if !left.is_empty() {
        return Err(GraphError::structure(
            &Site::Node(on_cycle(&left, &preds)),
            "is on a cycle; the graph must be acyclic",
        ));
    }

    // Exactly one DatasetInput and one loss; at most one optimizer.
    let of = |want: fn(Role) -> bool| -> Vec<i64> {
        nodes
            .iter()
            .filter(|(_, (_, r))| want(*r))
            .map(|(id, _)| *id)
            .collect()
    };
    let inputs = of(|r| r == Role::Input);
    let losses = of(|r| matches!(r, Role::Loss(_)));
    let optimizers = of(|r| matches!(r, Role::Optimizer(_)));
    let input = *inputs
        .first()
        .ok_or(GraphError::Missing("DatasetInput node (type 77)"))?;
    let loss = *losses.first().ok_or(GraphError::Missing(
        "loss node (CrossEntropyLoss or MSELoss)",
    ))?;
    for (extra, what) in [
        (inputs.get(1), "DatasetInput"),
        (losses.get(1), "loss"),
        (optimizers.get(1), "optimizer"),
    ] {
        if let Some(&id) = extra {
            return Err(GraphError::structure(
                &Site::Node(id),
                format!("a second {what}; only one is supported"),
            ));
        }
    }

    // The chain from DatasetInput's data (pin 0) to the loss's predictions (pin 0).
    let mut chain: Vec<i64> = Vec::new();
    let mut cur = (input, 0);
    loop {
        let at = Site::Node(cur.0);
        let next = match consumers.get(&cur).map(Vec::as_slice).unwrap_or_default() {
            [] if cur.0 == input => {
                return Err(GraphError::structure(
                    &at,
                    "its data output (pin 0) is not linked",
                ))
            }
            [] => {
                return Err(GraphError::structure(
                    &at,
                    "its output is not linked; the chain from DatasetInput must reach the loss",
                ))
            }
            [one] => *one,
            many => {
                let ids: Vec<String> = many.iter().map(|(id, _)| id.to_string()).collect();
                return Err(GraphError::structure(
                    &at,
                    format!(
                        "its output feeds {} nodes ({}); branching graphs are not supported yet, only one chain from DatasetInput to the loss",
                        many.len(),
                        ids.join(", ")
                    ),
                ));
            }
        };
        match nodes.get(&next.0).map(|(_, r)| *r) {
            Some(Role::Loss(_)) if next.1 == 0 => break,
            Some(Role::Loss(_)) => {
                return Err(GraphError::structure(
                    &Site::Node(next.0),
                    format!(
                        "its targets (pin 1) come from node {}, not DatasetInput's labels",
                        cur.0
                    ),
                ))
            }
            Some(Role::Layer(_) | Role::PassThrough) => {
                chain.push(next.0);
                cur = (next.0, 0);
            }
            _ => {
                return Err(GraphError::structure(
                    &Site::Node(next.0),
                    format!("takes the loss, not the output of node {}", cur.0),
                ))
            }
        }
    }
    if source.get(&(loss, 1)) != Some(&(input, 1)) {
        return Err(GraphError::structure(
            &Site::Node(loss),
            "its targets (pin 1) must be linked from DatasetInput's labels (pin 1)",
        ));
    }
    if let Some(&(to, _)) = consumers
        .get(&(input, 1))
        .into_iter()
        .flatten()
        .find(|t| **t != (loss, 1))
    {
        return Err(GraphError::structure(
            &Site::Node(to),
            "takes DatasetInput's labels (pin 1); only the loss's targets may",
        ));
    }
    if let Some(&opt) = optimizers.first() {
        if let Some(&(from, _)) = source.get(&(opt, 0)) {
            if from != loss {
                return Err(GraphError::structure(
                    &Site::Node(opt),
                    format!("takes node {from}'s output; an optimizer takes the loss"),
                ));
            }
        }
    }
    let on_chain: BTreeSet<i64> = chain.iter().copied().collect();
    if let Some((id, _)) = nodes.iter().find(|(id, (_, r))| {
        matches!(r, Role::Layer(_) | Role::PassThrough) && !on_chain.contains(id)
    }) {
        return Err(GraphError::structure(
            &Site::Node(*id),
            "is not on the chain from DatasetInput to the loss",
        ));
    }

    let mut pending = Vec::with_capacity(chain.len());
    for id in &chain {
        let Some((node, Role::Layer(ty))) = nodes.get(id) else {
            continue;
        };
        pending.push(Pending {
            id: id.to_string(),
            site: Site::Node(*id),
            ty: *ty,
            params: &node.parameters,
            default_units: Some(units_from_name(&node.name)),
        });
    }
    let loss_kind = match nodes.get(&loss).map(|(_, r)| *r) {
        Some(Role::Loss(kind)) => kind,
        _ => Loss::CrossEntropy,
    };
    let optimizer = optimizers.first().and_then(|id| match nodes.get(id) {
        Some((node, Role::Optimizer(kind))) => Some(PendingOptimizer {
            site: Site::Node(*id),
            kind: *kind,
            params: &node.parameters,
        }),
        _ => None,
    });
    assemble(
        dataset,
        dataset.sample.clone(),
        &pending,
        (loss_kind, Site::Node(loss)),
        optimizer.as_ref(),
        job_learning_rate,
    )
}
