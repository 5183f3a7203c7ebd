//! Named float32 tensors and their safetensors encoding: the format of checkpoints and of
//! the final `weights.safetensors` (readable by the `safetensors` Python package and NumPy).
//! Written here rather than taken from a crate so the host, the SDK and every backend agree on
//! one small, bounded reader.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The prefix of tensors and metadata keys that are training state (optimizer moments,
/// positions), not model weights.
pub const STATE_PREFIX: &str = "state.";
/// The metadata key holding the model spec (JSON) in weights files.
pub const MODEL_KEY: &str = "cyxwiz.model";
/// The longest safetensors header we read.
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// A float32 tensor with its name, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// `<layer id>.weight`, `<layer id>.bias`, `state.<...>`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// A tensor; panics if `data` does not fill `shape` (a programming error).
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        let name = name.into();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor {name}: data does not fill shape {shape:?}"
        );
        Self { name, shape, data }
    }
}

/// A set of named tensors plus string metadata: one safetensors file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TensorFile {
    /// The tensors, in file order.
    pub tensors: Vec<NamedTensor>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor called `name` with exactly `shape`, or an `INVALID_INPUT` error naming it.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&NamedTensor> {
        let t = self
            .get(name)
            .ok_or_else(|| Error::invalid_input(format!("tensor {name} is missing")))?;
        if t.shape != shape {
            return Err(Error::invalid_input(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(t)
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// A metadata value parsed as `T`, or an `INVALID_INPUT` error naming the key.
    pub fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let raw = self
            .meta(key)
            .ok_or_else(|| Error::invalid_input(format!("metadata {key} is missing")))?;
        raw.parse()
            .map_err(|_| Error::invalid_input(format!("metadata {key}={raw:?} does not parse")))
    }

    /// The model weights alone: without `state.` tensors and metadata.
    pub fn weights_only(&self) -> TensorFile {
        TensorFile {
            tensors: self
                .tensors
                .iter()
                .filter(|t| !t.name.starts_with(STATE_PREFIX))
                .cloned()
                .collect(),
            metadata: self
                .metadata
                .iter()
                .filter(|(k, _)| !k.starts_with(STATE_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The safetensors bytes: an 8-byte little-endian header length, the JSON header (padded
    /// with spaces to 8 bytes), then the tensors' data back to back.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            let meta = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            let len = t.data.len() * 4;
            header.insert(
                t.name.clone(),
                serde_json::json!({
                    "dtype": "F32",
                    "shape": t.shape,
                    "data_offsets": [offset, offset + len],
                }),
            );
            offset += len;
        }
        let mut json = serde_json::Value::Object(header).to_string().into_bytes();
        while !json.len().is_multiple_of(8) {
            json.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + json.len() + offset);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for t in &self.tensors {
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Reads safetensors bytes holding F32 tensors only. Every length and offset is checked
    /// against the buffer before anything is allocated.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad =
            |why: String| Error::invalid_input(format!("not a valid safetensors file: {why}"));
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("shorter than its 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || header_len > (bytes.len() as u64 - 8) {
            return Err(bad(format!(
                "header length {header_len} is past the end of the {}-byte file",
                bytes.len()
            )));
        }
        let header_end = 8 + header_len as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..header_end])
                .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data = &bytes[header_end..];
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::new();
        for (name, entry) in header {
            if name == "__metadata__" {
                let map = entry
                    .as_object()
                    .ok_or_else(|| bad("__metadata__ is not an object".into()))?;
                for (k, v) in map {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad(format!("metadata {k} is not a string")))?;
                    metadata.insert(k.clone(), v.to_owned());
                }
                continue;
            }
            let dtype = entry.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
            if dtype != "F32" {
                return Err(bad(format!("tensor {name} is {dtype:?}, only F32 is read")));
            }
            let shape: Vec<usize> = entry
                .get("shape")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .ok_or_else(|| bad(format!("tensor {name} has no valid shape")))?;
            let offsets: [usize; 2] = entry
                .get("data_offsets")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .ok_or_else(|| bad(format!("tensor {name} has no valid data_offsets")))?;
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor {name}: shape {shape:?} overflows")))?;
            let [begin, end] = offsets;
            if begin > end || end > data.len() || Some(end - begin) != count.checked_mul(4) {
                return Err(bad(format!(
                    "tensor {name}: offsets {begin}..{end} do not hold {count} floats in {} data bytes",
                    data.len()
                )));
            }
            let values = data[begin..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push((
                begin,
                NamedTensor {
                    name,
                    shape,
                    data: values,
                },
            ));
        }
        tensors.sort_by_key(|(begin, _)| *begin);
        Ok(Self {
            tensors: tensors.into_iter().map(|(_, t)| t).collect(),
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_values_and_metadata() {
        let mut file = TensorFile::default();
        file.tensors.push(NamedTensor::new(
            "1.weight",
            vec![2, 3],
            (0..6).map(|v| v as f32).collect(),
        ));
        file.tensors
            .push(NamedTensor::new("state.1.weight.m", vec![1], vec![0.5]));
        file.tensors.push(NamedTensor::new(
            "1.bias",
            vec![2],
            vec![-1.0, f32::MIN_POSITIVE],
        ));
        file.metadata.insert("state.epoch".into(), "2".into());
        file.metadata.insert(MODEL_KEY.into(), "{}".into());
        let bytes = file.encode();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
        let back = TensorFile::decode(&bytes).unwrap();
        assert_eq!(back, file);
        let weights = back.weights_only();
        assert_eq!(weights.tensors.len(), 2);
        assert_eq!(weights.metadata.len(), 1);
        assert_eq!(back.meta_parse::<u32>("state.epoch").unwrap(), 2);
        assert!(back.expect("1.bias", &[3]).is_err());
    }

    #[test]
    fn hostile_bytes_are_refused_without_allocating() {
        assert!(TensorFile::decode(b"abc").is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(TensorFile::decode(&huge).is_err());
        let header = br#"{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        let err = TensorFile::decode(&bytes).unwrap_err();
        assert!(err.message.contains("tensor w"), "{err}");
        let header = br#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        assert!(TensorFile::decode(&bytes)
            .unwrap_err()
            .message
            .contains("F16"));
    }
}
