//! Element types and tensors between the SDK and ONNX Runtime values.

use cyxwiz_sdk::{DType, Error, Result, Tensor, TensorView};
use ort::value::{
    DynValue, PrimitiveTensorElementType, Tensor as OrtTensor, TensorElementType, Value,
};

/// The SDK dtype of an ONNX Runtime element type, if the node can exchange it.
pub fn to_sdk(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Uint16 => DType::U16,
        TensorElementType::Uint32 => DType::U32,
        TensorElementType::Uint64 => DType::U64,
        TensorElementType::Bool => DType::BOOL,
        _ => return None,
    })
}

fn typed<T, const N: usize>(view: &TensorView<'_>, read: fn([u8; N]) -> T) -> Result<DynValue>
where
    T: PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static,
{
    let values: Vec<T> = view
        .data
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            read(b)
        })
        .collect();
    let shape: Vec<i64> = view.shape.to_vec();
    OrtTensor::from_array((shape, values))
        .map(|t| t.into_dyn())
        .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", view.name)))
}

/// An ONNX Runtime value holding a copy of `view` (already checked against the spec).
pub fn to_value(view: &TensorView<'_>) -> Result<DynValue> {
    match view.dtype {
        DType::F32 => typed(view, f32::from_le_bytes),
        DType::F64 => typed(view, f64::from_le_bytes),
        DType::I8 => typed(view, i8::from_le_bytes),
        DType::I16 => typed(view, i16::from_le_bytes),
        DType::I32 => typed(view, i32::from_le_bytes),
        DType::I64 => typed(view, i64::from_le_bytes),
        DType::U8 => typed(view, u8::from_le_bytes),
        DType::U16 => typed(view, u16::from_le_bytes),
        DType::U32 => typed(view, u32::from_le_bytes),
        DType::U64 => typed(view, u64::from_le_bytes),
        DType::BOOL => {
            if view.data.iter().any(|b| *b > 1) {
                return Err(Error::invalid_input(format!(
                    "input `{}`: bool elements must be 0 or 1",
                    view.name
                )));
            }
            typed(view, |[b]: [u8; 1]| b == 1)
        }
        other => Err(Error::unsupported(format!(
            "input `{}`: dtype {other} is not supported by this plugin",
            view.name
        ))),
    }
}

fn bytes<T: PrimitiveTensorElementType + Copy, const N: usize>(
    name: &str,
    value: &Value,
    dtype: DType,
    write: fn(T) -> [u8; N],
) -> Result<Tensor> {
    let (shape, data) = value
        .try_extract_tensor::<T>()
        .map_err(|e| Error::runtime(format!("output `{name}`: {e}")))?;
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape: shape.iter().copied().collect(),
        data: data.iter().flat_map(|v| write(*v)).collect(),
    })
}

/// Copies an ONNX Runtime output into an SDK tensor.
pub fn from_value(name: &str, value: &Value) -> Result<Tensor> {
    let ty = match value.dtype() {
        ort::value::ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(Error::runtime(format!(
                "output `{name}` is a {other:?}, not a tensor"
            )))
        }
    };
    match ty {
        TensorElementType::Float32 => bytes(name, value, DType::F32, f32::to_le_bytes),
        TensorElementType::Float64 => bytes(name, value, DType::F64, f64::to_le_bytes),
        TensorElementType::Int8 => bytes(name, value, DType::I8, i8::to_le_bytes),
        TensorElementType::Int16 => bytes(name, value, DType::I16, i16::to_le_bytes),
        TensorElementType::Int32 => bytes(name, value, DType::I32, i32::to_le_bytes),
        TensorElementType::Int64 => bytes(name, value, DType::I64, i64::to_le_bytes),
        TensorElementType::Uint8 => bytes(name, value, DType::U8, u8::to_le_bytes),
        TensorElementType::Uint16 => bytes(name, value, DType::U16, u16::to_le_bytes),
        TensorElementType::Uint32 => bytes(name, value, DType::U32, u32::to_le_bytes),
        TensorElementType::Uint64 => bytes(name, value, DType::U64, u64::to_le_bytes),
        TensorElementType::Bool => bytes(name, value, DType::BOOL, |b: bool| [u8::from(b)]),
        other => Err(Error::runtime(format!(
            "output `{name}` has element type {other:?}"
        ))),
    }
}
