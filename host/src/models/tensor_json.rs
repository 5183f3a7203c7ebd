//! Tensors as JSON, for `cyxwiz-node infer` and the HTTP predict route.
//!
//! Input forms, keyed by input name:
//! - explicit: `{"x": {"dtype": "float32", "shape": [1, 4], "data": [1, 2, 3, 4]}}`
//! - nested arrays: `{"x": [[1, 2, 3, 4]]}`; the shape is read off the nesting and the dtype
//!   comes from the model's input spec.
//!
//! A bare value (not an object of names) is accepted for a model with exactly one input.
//! Outputs are always explicit: `{"name": {"dtype", "shape", "data"}}` with `data` flat.

use cyxwiz_sdk::{DType, ModelInfo, Tensor};
use serde_json::{Map, Number, Value};

/// A JSON tensor error, naming the input and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct TensorJsonError(pub String);

fn err<T>(msg: String) -> Result<T, TensorJsonError> {
    Err(TensorJsonError(msg))
}

/// Parses `value` into named input tensors for a model with `info`.
pub fn parse_inputs(value: &Value, info: &ModelInfo) -> Result<Vec<Tensor>, TensorJsonError> {
    let named: Map<String, Value> = match value {
        Value::Object(map) if !looks_like_explicit(map) => map.clone(),
        other => match info.inputs.as_slice() {
            [only] => Map::from_iter([(only.name.clone(), other.clone())]),
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
        .iter()
        .map(|(name, v)| {
            let spec_dtype = info
                .inputs
                .iter()
                .find(|s| &s.name == name)
                .map(|s| s.dtype);
            parse_tensor(name, v, spec_dtype)
        })
        .collect()
}

fn looks_like_explicit(map: &Map<String, Value>) -> bool {
    map.contains_key("data") && map.contains_key("shape")
}

fn parse_tensor(name: &str, v: &Value, spec: Option<DType>) -> Result<Tensor, TensorJsonError> {
    let (dtype, shape, flat) = match v {
        Value::Object(map) if looks_like_explicit(map) => {
            let dtype = match map.get("dtype") {
                None => spec.unwrap_or(DType::F32),
                Some(Value::String(s)) => DType::parse(s).ok_or_else(|| {
                    TensorJsonError(format!("input `{name}`: unknown dtype `{s}`"))
                })?,
                Some(other) => {
                    return err(format!(
                        "input `{name}`: `dtype` must be a string, got {other}"
                    ))
                }
            };
            let shape = map["shape"]
                .as_array()
                .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
                .filter(|s| s.iter().all(|d| *d >= 0))
                .ok_or_else(|| {
                    TensorJsonError(format!(
                        "input `{name}`: `shape` must be a list of non-negative integers"
                    ))
                })?;
            let mut flat = Vec::new();
            flatten(name, &map["data"], &mut flat)?;
            (dtype, shape, flat)
        }
        Value::Array(_) | Value::Number(_) | Value::Bool(_) => {
            let shape = nested_shape(name, v)?;
            let mut flat = Vec::new();
            flatten(name, v, &mut flat)?;
            (spec.unwrap_or(DType::F32), shape, flat)
        }
        other => {
            return err(format!(
                "input `{name}`: expected numbers, nested lists or {{dtype, shape, data}}, got {}",
                kind(other)
            ))
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize))
        .ok_or_else(|| TensorJsonError(format!("input `{name}`: shape {shape:?} overflows")))?;
    if count != flat.len() {
        return err(format!(
            "input `{name}`: shape {shape:?} needs {count} values, got {}",
            flat.len()
        ));
    }
    let data = encode(name, dtype, &flat)?;
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn nested_shape(name: &str, v: &Value) -> Result<Vec<i64>, TensorJsonError> {
    match v {
        Value::Array(items) => {
            let Some(first) = items.first() else {
                return Ok(vec![0]);
            };
            let inner = nested_shape(name, first)?;
            for item in items {
                if nested_shape(name, item)? != inner {
                    return err(format!("input `{name}`: nested lists are ragged"));
                }
            }
            Ok(std::iter::once(items.len() as i64).chain(inner).collect())
        }
        _ => Ok(Vec::new()),
    }
}

fn flatten(name: &str, v: &Value, out: &mut Vec<Number>) -> Result<(), TensorJsonError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(name, i, out)),
        Value::Number(n) => {
            out.push(n.clone());
            Ok(())
        }
        Value::Bool(b) => {
            out.push(Number::from(u8::from(*b)));
            Ok(())
        }
        other => err(format!(
            "input `{name}`: data holds {}, expected numbers",
            kind(other)
        )),
    }
}

fn encode(name: &str, dtype: DType, values: &[Number]) -> Result<Vec<u8>, TensorJsonError> {
    let float = |n: &Number| n.as_f64().unwrap_or(f64::NAN);
    let int = |n: &Number| -> Result<i128, TensorJsonError> {
        if let Some(i) = n.as_i64() {
            Ok(i as i128)
        } else if let Some(u) = n.as_u64() {
            Ok(u as i128)
        } else {
            err(format!(
                "input `{name}` is {dtype}, but {n} is not an integer"
            ))
        }
    };
    macro_rules! ints {
        ($t:ty) => {
            values
                .iter()
                .map(|n| {
                    let v = int(n)?;
                    <$t>::try_from(v)
                        .map(|v| v.to_le_bytes().to_vec())
                        .map_err(|_| {
                            TensorJsonError(format!("input `{name}`: {v} does not fit in {dtype}"))
                        })
                })
                .collect::<Result<Vec<Vec<u8>>, _>>()
                .map(|v| v.concat())
        };
    }
    match dtype {
        DType::F32 => Ok(values
            .iter()
            .flat_map(|n| (float(n) as f32).to_le_bytes())
            .collect()),
        DType::F64 => Ok(values.iter().flat_map(|n| float(n).to_le_bytes()).collect()),
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::BOOL => values
            .iter()
            .map(|n| match int(n)? {
                0 => Ok(0u8),
                1 => Ok(1u8),
                v => err(format!("input `{name}` is bool, got {v}")),
            })
            .collect(),
        other => err(format!(
            "input `{name}`: {other} inputs cannot be given as JSON; use float32"
        )),
    }
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
mod tests {
    use super::*;
    use cyxwiz_sdk::TensorSpec;
    use serde_json::json;

    fn info(inputs: &[(&str, DType)]) -> ModelInfo {
        ModelInfo {
            inputs: inputs
                .iter()
                .map(|(n, d)| TensorSpec {
                    name: n.to_string(),
                    dtype: *d,
                    shape: vec![-1, 2],
                })
                .collect(),
            ..ModelInfo::default()
        }
    }

    #[test]
    fn nested_lists_take_the_spec_dtype() {
        let t = parse_inputs(
            &json!({"ids": [[1, 2], [3, 4]]}),
            &info(&[("ids", DType::I64)]),
        )
        .unwrap();
        assert_eq!(t[0].dtype, DType::I64);
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].data.len(), 32);
    }

    #[test]
    fn bare_value_binds_to_the_only_input_and_round_trips() {
        let t = parse_inputs(&json!([[0.5, -1.0]]), &info(&[("x", DType::F32)])).unwrap();
        let back = tensor_to_json(&t[0]);
        assert_eq!(
            back,
            json!({"dtype": "float32", "shape": [1, 2], "data": [0.5, -1.0]})
        );
    }

    #[test]
    fn explicit_form_and_errors_name_the_input() {
        let i = info(&[("x", DType::F32)]);
        let ok = parse_inputs(
            &json!({"x": {"dtype": "int32", "shape": [2], "data": [1, 2]}}),
            &i,
        )
        .unwrap();
        assert_eq!(ok[0].dtype, DType::I32);
        let e = parse_inputs(&json!({"x": {"shape": [3], "data": [1, 2]}}), &i).unwrap_err();
        assert!(
            e.0.contains("`x`") && e.0.contains("needs 3 values, got 2"),
            "{e}"
        );
        let e = parse_inputs(&json!({"x": [[1], [2, 3]]}), &i).unwrap_err();
        assert!(e.0.contains("ragged"), "{e}");
        let e = parse_inputs(&json!({"x": "hello"}), &i).unwrap_err();
        assert!(e.0.contains("a string"), "{e}");
        let e = parse_inputs(
            &json!({"x": {"dtype": "uint8", "shape": [1], "data": [300]}}),
            &i,
        )
        .unwrap_err();
        assert!(e.0.contains("does not fit"), "{e}");
        let two = info(&[("a", DType::F32), ("b", DType::F32)]);
        let e = parse_inputs(&json!([1, 2]), &two).unwrap_err();
        assert!(e.0.contains("2 inputs"), "{e}");
    }

    #[test]
    fn half_floats_decode() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
    }
}
