//! Tensors as JSON, for `cyxwiz-node infer` and the HTTP predict route.
//!
//! Input forms, keyed by input name:
//! - explicit: `{"x": {"dtype": "float32", "shape": [1, 4], "data": [1, 2, 3, 4]}}`
//! - nested arrays: `{"x": [[1, 2, 3, 4]]}`; the shape is read off the nesting and the dtype
//!   comes from the model's input spec.
//!
//! A bare value (not an object of names) is accepted for a model with exactly one input.
//! Outputs are always explicit: `{"name": {"dtype", "shape", "data"}}` with `data` flat.
//!
//! Inputs are read in one linear pass straight from the JSON text (no `serde_json::Value`
//! tree): the shape of nested lists is taken from the first path and every sibling is checked
//! against it as it streams by. Lists nest at most [`MAX_DEPTH`] deep and one request holds at
//! most [`JsonLimits::max_elements`] numbers; numbers wait in a compact form until the model's
//! specs say which dtype they become. Parsing is CPU work: async callers run it on a blocking
//! thread.

mod reader;

pub use reader::InputsReader;

use cyxwiz_sdk::{DType, ModelInfo, Tensor};
use serde_json::{Number, Value};
use std::fmt;

/// The deepest nesting of lists a JSON tensor may have (its most dimensions).
pub const MAX_DEPTH: usize = 32;

/// Bounds on the JSON tensors of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Most numbers across all inputs of one request (`[api] max_tensor_elements`).
    pub max_elements: usize,
}

impl Default for JsonLimits {
    /// 4 Mi numbers: as many as the default 8 MiB body can hold (`0,` per number).
    fn default() -> Self {
        Self {
            max_elements: 4 << 20,
        }
    }
}

/// A JSON tensor error, naming the input and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct TensorJsonError(pub String);

fn err<T>(msg: String) -> Result<T, TensorJsonError> {
    Err(TensorJsonError(msg))
}

/// One number as JSON gave it, before it has a dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::I(v) => write!(f, "{v}"),
            Num::U(v) => write!(f, "{v}"),
            Num::F(v) => write!(f, "{v}"),
        }
    }
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::I(v) => v as f64,
            Num::U(v) => v as f64,
            Num::F(v) => v,
        }
    }

    fn int(self) -> Option<i128> {
        match self {
            Num::I(v) => Some(i128::from(v)),
            Num::U(v) => Some(i128::from(v)),
            Num::F(_) => None,
        }
    }
}

/// Numbers from a scalar or (nested) lists, flattened in order, with their shape; `None` when
/// the lists are ragged.
#[derive(Debug, PartialEq)]
struct Numbers {
    shape: Option<Vec<i64>>,
    values: Vec<Num>,
}

/// A parsed JSON value of the inputs, before the model's specs are applied.
#[derive(Debug, PartialEq)]
enum Node {
    Numbers(Numbers),
    Text(String),
    Null,
    Object(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Numbers(n) if n.shape.as_ref().is_some_and(Vec::is_empty) => "a number",
            Node::Numbers(_) => "a list",
            Node::Text(_) => "a string",
            Node::Null => "null",
            Node::Object(_) => "an object",
        }
    }
}

/// Inputs read from JSON, not yet given dtypes: see [`JsonInputs::into_tensors`].
#[derive(Debug, PartialEq)]
pub struct JsonInputs(Node);

/// What is wrong, for messages: `input `x`` or, for a bare value, ``inputs``.
fn subject(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("input `{n}`"),
        None => "`inputs`".to_string(),
    }
}

impl JsonInputs {
    /// Reads inputs from JSON text (the whole text is the inputs value).
    pub fn from_slice(json: &[u8], limits: JsonLimits) -> Result<Self, TensorJsonError> {
        let reader = InputsReader::new(limits);
        let mut de = serde_json::Deserializer::from_slice(json);
        let inputs = reader.read(&mut de)?;
        de.end()
            .map_err(|e| TensorJsonError(format!("invalid inputs: {e}")))?;
        Ok(inputs)
    }

    /// Reads inputs from an already parsed value.
    pub fn from_value(value: &Value, limits: JsonLimits) -> Result<Self, TensorJsonError> {
        InputsReader::new(limits).read(value)
    }

    /// Binds the inputs to the model's input specs and encodes them as tensors.
    pub fn into_tensors(self, info: &ModelInfo) -> Result<Vec<Tensor>, TensorJsonError> {
        let named = match self.0 {
            Node::Object(entries) if !looks_like_explicit(&entries) => entries,
            other => match info.inputs.as_slice() {
                [only] => vec![(only.name.clone(), other)],
                specs => {
                    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                    return err(format!(
                        "the model has {} inputs ({}): give an object keyed by input name",
                        names.len(),
                        names.join(", ")
                    ));
                }
            },
        };
        named
            .into_iter()
            .map(|(name, node)| {
                let spec = info.inputs.iter().find(|s| s.name == name).map(|s| s.dtype);
                tensor(&name, node, spec)
            })
            .collect()
    }
}

/// Parses `value` into named input tensors for a model with `info`, with the default
/// [`JsonLimits`].
pub fn parse_inputs(value: &Value, info: &ModelInfo) -> Result<Vec<Tensor>, TensorJsonError> {
    JsonInputs::from_value(value, JsonLimits::default())?.into_tensors(info)
}

fn looks_like_explicit(entries: &[(String, Node)]) -> bool {
    let has = |key: &str| entries.iter().any(|(k, _)| k == key);
    has("data") && has("shape")
}

fn take(entries: &mut Vec<(String, Node)>, key: &str) -> Option<Node> {
    let i = entries.iter().position(|(k, _)| k == key)?;
    Some(entries.swap_remove(i).1)
}

fn tensor(name: &str, node: Node, spec: Option<DType>) -> Result<Tensor, TensorJsonError> {
    let (dtype, shape, values) = match node {
        Node::Object(mut map) if looks_like_explicit(&map) => {
            let dtype = match take(&mut map, "dtype") {
                None => spec.unwrap_or(DType::F32),
                Some(Node::Text(s)) => DType::parse(&s).ok_or_else(|| {
                    TensorJsonError(format!("input `{name}`: unknown dtype `{s}`"))
                })?,
                Some(other) => {
                    return err(format!(
                        "input `{name}`: `dtype` must be a string, got {}",
                        other.kind()
                    ))
                }
            };
            let shape = match take(&mut map, "shape") {
                Some(Node::Numbers(Numbers {
                    shape: Some(s),
                    values,
                })) if s.len() == 1 => values
                    .iter()
                    .map(|v| v.int().and_then(|d| i64::try_from(d).ok()))
                    .collect::<Option<Vec<i64>>>()
                    .filter(|s| s.iter().all(|d| *d >= 0)),
                _ => None,
            }
            .ok_or_else(|| {
                TensorJsonError(format!(
                    "input `{name}`: `shape` must be a list of non-negative integers"
                ))
            })?;
            let values = match take(&mut map, "data") {
                // Explicit data may nest any way; only its count must match the shape.
                Some(Node::Numbers(n)) => n.values,
                Some(other) => {
                    return err(format!(
                        "input `{name}`: data holds {}, expected numbers",
                        other.kind()
                    ))
                }
                None => Vec::new(),
            };
            (dtype, shape, values)
        }
        Node::Numbers(Numbers { shape, values }) => {
            let shape = shape.ok_or_else(|| {
                TensorJsonError(format!("input `{name}`: nested lists are ragged"))
            })?;
            (spec.unwrap_or(DType::F32), shape, values)
        }
        other => {
            return err(format!(
                "input `{name}`: expected numbers, nested lists or {{dtype, shape, data}}, got {}",
                other.kind()
            ))
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).ok()?))
        .ok_or_else(|| TensorJsonError(format!("input `{name}`: shape {shape:?} overflows")))?;
    if count != values.len() {
        return err(format!(
            "input `{name}`: shape {shape:?} needs {count} values, got {}",
            values.len()
        ));
    }
    let data = encode(name, dtype, &values)?;
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

/// Encodes numbers as `dtype`'s little-endian bytes, straight into one buffer.
fn encode(name: &str, dtype: DType, values: &[Num]) -> Result<Vec<u8>, TensorJsonError> {
    let size = dtype.size_of().unwrap_or(0);
    let mut out = Vec::with_capacity(values.len() * size);
    macro_rules! ints {
        ($t:ty) => {
            for n in values {
                let v = n.int().ok_or_else(|| {
                    TensorJsonError(format!(
                        "input `{name}` is {dtype}, but {n} is not an integer"
                    ))
                })?;
                let v = <$t>::try_from(v).map_err(|_| {
                    TensorJsonError(format!("input `{name}`: {v} does not fit in {dtype}"))
                })?;
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
    }
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|n| out.extend_from_slice(&(n.float() as f32).to_le_bytes())),
        DType::F64 => values
            .iter()
            .for_each(|n| out.extend_from_slice(&n.float().to_le_bytes())),
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::BOOL => {
            for n in values {
                match n.int() {
                    Some(0) => out.push(0),
                    Some(1) => out.push(1),
                    _ => return err(format!("input `{name}` is bool, got {n}")),
                }
            }
        }
        other => {
            return err(format!(
                "input `{name}`: {other} inputs cannot be given as JSON; use float32"
            ))
        }
    }
    Ok(out)
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (bits >> 10) & 0x1f;
    let frac = (bits & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        0x1f if frac == 0.0 => f32::INFINITY,
        0x1f => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e as i32 - 15),
    }
}

fn number(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Renders one tensor as `{"dtype", "shape", "data"}` with flat data; non-finite floats
/// become `null` (JSON has no NaN).
pub fn tensor_to_json(t: &Tensor) -> Value {
    let d = &t.data;
    let data: Vec<Value> = match t.dtype {
        DType::F32 => d
            .chunks_exact(4)
            .map(|b| number(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
            .collect(),
        DType::F64 => d
            .chunks_exact(8)
            .map(|b| {
                number(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            })
            .collect(),
        DType::F16 => d
            .chunks_exact(2)
            .map(|b| number(f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64))
            .collect(),
        DType::BF16 => d
            .chunks_exact(2)
            .map(|b| number(f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64))
            .collect(),
        DType::I8 => d.iter().map(|v| Value::from(*v as i8)).collect(),
        DType::U8 => d.iter().map(|v| Value::from(*v)).collect(),
        DType::BOOL => d.iter().map(|v| Value::from(*v != 0)).collect(),
        DType::I16 => d
            .chunks_exact(2)
            .map(|b| Value::from(i16::from_le_bytes([b[0], b[1]])))
            .collect(),
        DType::U16 => d
            .chunks_exact(2)
            .map(|b| Value::from(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        DType::I32 => d
            .chunks_exact(4)
            .map(|b| Value::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        DType::U32 => d
            .chunks_exact(4)
            .map(|b| Value::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        DType::I64 => d
            .chunks_exact(8)
            .map(|b| {
                Value::from(i64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            })
            .collect(),
        DType::U64 => d
            .chunks_exact(8)
            .map(|b| {
                Value::from(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            })
            .collect(),
        _ => Vec::new(),
    };
    serde_json::json!({
        "dtype": t.dtype.as_str(),
        "shape": t.shape,
        "data": data,
    })
}

/// Renders outputs keyed by name.
pub fn outputs_to_json(outputs: &[Tensor]) -> Value {
    Value::Object(
        outputs
            .iter()
            .map(|t| (t.name.clone(), tensor_to_json(t)))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
