//! Checks a TFLite flatbuffer before tract-tflite converts it. tract-tflite indexes the graph
//! without bounds checks (`unwrap`, `[]`, `get`), so a hostile or unusual file would panic
//! inside it: every index, optional field and constant it reads is checked here first, and
//! operators it has no translation for are listed by name, all at once.

use cyxwiz_sdk::{Error, Result};
use std::collections::HashSet;
use tract_tflite::tflite::{BuiltinOperator, Model, TensorType};

/// The builtin operators tract-tflite 0.23.9 translates (its `ops::register_all`); the crate
/// is pinned to that exact version, so this list and its registry cannot drift apart.
const SUPPORTED: &[BuiltinOperator] = &[
    BuiltinOperator::ABS,
    BuiltinOperator::ADD,
    BuiltinOperator::AVERAGE_POOL_2D,
    BuiltinOperator::BATCH_MATMUL,
    BuiltinOperator::BROADCAST_TO,
    BuiltinOperator::CEIL,
    BuiltinOperator::CONCATENATION,
    BuiltinOperator::CONV_2D,
    BuiltinOperator::COS,
    BuiltinOperator::DEPTHWISE_CONV_2D,
    BuiltinOperator::DIV,
    BuiltinOperator::EQUAL,
    BuiltinOperator::EXP,
    BuiltinOperator::EXPAND_DIMS,
    BuiltinOperator::FLOOR,
    BuiltinOperator::FULLY_CONNECTED,
    BuiltinOperator::GREATER,
    BuiltinOperator::GREATER_EQUAL,
    BuiltinOperator::HARD_SWISH,
    BuiltinOperator::LEAKY_RELU,
    BuiltinOperator::LESS,
    BuiltinOperator::LESS_EQUAL,
    BuiltinOperator::LOG,
    BuiltinOperator::LOGICAL_AND,
    BuiltinOperator::LOGICAL_NOT,
    BuiltinOperator::LOGICAL_OR,
    BuiltinOperator::LOGISTIC,
    BuiltinOperator::MAXIMUM,
    BuiltinOperator::MAX_POOL_2D,
    BuiltinOperator::MEAN,
    BuiltinOperator::MINIMUM,
    BuiltinOperator::MUL,
    BuiltinOperator::NOT_EQUAL,
    BuiltinOperator::PAD,
    BuiltinOperator::PADV2,
    BuiltinOperator::REDUCE_MAX,
    BuiltinOperator::REDUCE_MIN,
    BuiltinOperator::REDUCE_PROD,
    BuiltinOperator::RELU,
    BuiltinOperator::RELU6,
    BuiltinOperator::RESHAPE,
    BuiltinOperator::RESIZE_BILINEAR,
    BuiltinOperator::RESIZE_NEAREST_NEIGHBOR,
    BuiltinOperator::RSQRT,
    BuiltinOperator::SELECT,
    BuiltinOperator::SELECT_V2,
    BuiltinOperator::SHAPE,
    BuiltinOperator::SIN,
    BuiltinOperator::SLICE,
    BuiltinOperator::SOFTMAX,
    BuiltinOperator::SQRT,
    BuiltinOperator::SQUARE,
    BuiltinOperator::SQUEEZE,
    BuiltinOperator::STRIDED_SLICE,
    BuiltinOperator::SUB,
    BuiltinOperator::SUM,
    BuiltinOperator::TANH,
    BuiltinOperator::TRANSPOSE,
];

/// Element types tract-tflite reads without hitting an `unimplemented!`.
fn plain_type(t: TensorType) -> Option<usize> {
    Some(match t {
        TensorType::FLOAT32 | TensorType::INT32 | TensorType::UINT32 => 4,
        TensorType::FLOAT16 | TensorType::INT16 | TensorType::UINT16 => 2,
        TensorType::FLOAT64 | TensorType::INT64 | TensorType::UINT64 => 8,
        TensorType::UINT8 | TensorType::INT8 | TensorType::BOOL => 1,
        _ => return None,
    })
}

/// The operator code as TFLite resolves it (small codes live in the deprecated field).
fn opcode(code: &tract_tflite::tflite::OperatorCode) -> BuiltinOperator {
    let deprecated = code.deprecated_builtin_code() as i32;
    if deprecated == BuiltinOperator::PLACEHOLDER_FOR_GREATER_OP_CODES.0 {
        code.builtin_code()
    } else {
        BuiltinOperator(deprecated)
    }
}

fn op_name(code: &tract_tflite::tflite::OperatorCode) -> String {
    let op = opcode(code);
    match (op, code.custom_code()) {
        (BuiltinOperator::CUSTOM, Some(custom)) => format!("custom op `{custom}`"),
        _ => op
            .variant_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("builtin op {}", op.0)),
    }
}

/// Checks `model` (already verified as a flatbuffer) for everything tract-tflite assumes.
/// Malformed structure is `INVALID_INPUT`; valid TFLite that tract cannot run is
/// `UNSUPPORTED`, naming every unsupported operator.
pub fn check(model: &Model) -> Result<()> {
    let bad = |why: String| Error::invalid_input(format!("malformed TFLite model: {why}"));
    let subgraphs = model
        .subgraphs()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no subgraphs".into()))?;
    let main = subgraphs.get(0);
    let tensors = main
        .tensors()
        .ok_or_else(|| bad("the main subgraph has no tensors".into()))?;
    let codes = model.operator_codes().unwrap_or_default();
    let operators = main
        .operators()
        .ok_or_else(|| bad("the main subgraph has no operators".into()))?;
    // Operators first: a model tract cannot translate is unsupported whatever else it holds.
    let mut unsupported: Vec<String> = Vec::new();
    for (n, op) in operators.iter().enumerate() {
        let code = usize::try_from(op.opcode_index())
            .ok()
            .filter(|c| *c < codes.len())
            .map(|c| codes.get(c))
            .ok_or_else(|| {
                bad(format!(
                    "operator {n} has opcode index {}",
                    op.opcode_index()
                ))
            })?;
        let name = op_name(&code);
        if !SUPPORTED.contains(&opcode(&code)) && !unsupported.contains(&name) {
            unsupported.push(name);
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::unsupported(format!(
            "tract-tflite {} cannot run this model: no translation for {}",
            crate::TRACT_VERSION,
            unsupported.join(", ")
        )));
    }
    let buffers = model.buffers();
    let n_tensors = tensors.len();
    let index = |i: i32, what: &str| -> Result<usize> {
        usize::try_from(i)
            .ok()
            .filter(|i| *i < n_tensors)
            .ok_or_else(|| bad(format!("{what} refers to tensor {i} of {n_tensors}")))
    };
    let mut constant = vec![false; n_tensors];
    for (i, t) in tensors.iter().enumerate() {
        let name = t
            .name()
            .ok_or_else(|| bad(format!("tensor {i} has no name")))?;
        let size = plain_type(t.type_()).ok_or_else(|| {
            Error::unsupported(format!(
                "tensor `{name}` has TFLite type {}, which tract cannot read",
                t.type_().variant_name().unwrap_or("unknown")
            ))
        })?;
        let shape = t
            .shape()
            .ok_or_else(|| bad(format!("tensor `{name}` has no shape")))?;
        let mut elements = 1usize;
        for d in shape.iter() {
            let d = usize::try_from(d).map_err(|_| {
                Error::unsupported(format!(
                    "tensor `{name}` has a dynamic dimension ({d}); tract-tflite needs fixed shapes"
                ))
            })?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| bad(format!("tensor `{name}` is impossibly large")))?;
        }
        if let Some(q) = t.quantization() {
            let empty = |v: Option<usize>| v == Some(0);
            if empty(q.scale().map(|s| s.len())) || empty(q.zero_point().map(|z| z.len())) {
                return Err(bad(format!(
                    "tensor `{name}` has empty quantization parameters"
                )));
            }
        }
        let buffer = t.buffer() as usize;
        if buffer != 0 {
            let buffers = buffers.filter(|b| buffer < b.len()).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` refers to a missing buffer {buffer}"
                ))
            })?;
            if let Some(data) = buffers.get(buffer).data() {
                let want = elements.saturating_mul(size);
                if data.len() != want {
                    return Err(bad(format!(
                        "tensor `{name}` holds {} bytes, its shape needs {want}",
                        data.len()
                    )));
                }
                constant[i] = true;
            }
        }
    }
    let mut available: HashSet<usize> = HashSet::new();
    for i in main
        .inputs()
        .ok_or_else(|| bad("the main subgraph lists no inputs".into()))?
    {
        available.insert(index(i, "a subgraph input")?);
    }
    for (n, op) in operators.iter().enumerate() {
        let name = op_name(&codes.get(op.opcode_index() as usize));
        let outputs = op
            .outputs()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad(format!("operator {n} ({name}) lists no outputs")))?;
        let outputs = outputs
            .iter()
            .map(|o| index(o, &format!("operator {n} ({name})")))
            .collect::<Result<Vec<_>>>()?;
        let inputs = op
            .inputs()
            .ok_or_else(|| bad(format!("operator {n} ({name}) lists no inputs")))?;
        for i in inputs {
            if i < 0 {
                return Err(Error::unsupported(format!(
                    "operator {n} ({name}) omits an optional input, which tract-tflite cannot read"
                )));
            }
            let i = index(i, &format!("operator {n} ({name})"))?;
            if !available.contains(&i) && !constant[i] {
                return Err(bad(format!(
                    "operator {n} ({name}) reads tensor {i} before anything produces it"
                )));
            }
        }
        available.extend(outputs);
    }
    let outputs = main
        .outputs()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("the main subgraph lists no outputs".into()))?;
    for o in outputs {
        let o = index(o, "a subgraph output")?;
        if !available.contains(&o) {
            return Err(bad(format!("subgraph output {o} is never produced")));
        }
    }
    Ok(())
}
