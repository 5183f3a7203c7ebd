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

#[cfg(not(target_endian = "little"))]
compile_error!(
    "tensor bytes cross the plugin boundary little-endian; this plugin copies them as is"
);

/// Copies `view`'s bytes into a new `Vec<T>` with one memcpy (the bytes are little-endian,
/// as is the host).
fn typed<T>(view: &TensorView<'_>) -> Result<DynValue>
where
    T: PrimitiveTensorElementType + std::fmt::Debug + Clone + Copy + Default + 'static,
{
    let n = view.data.len() / std::mem::size_of::<T>();
    let mut values = vec![T::default(); n];
    // SAFETY: `T` is a plain numeric type (or bool, validated to 0/1 by the caller) and the
    // destination holds exactly `view.data.len()` bytes (`check_inputs` verified the length).
    unsafe {
        std::ptr::copy_nonoverlapping(
            view.data.as_ptr(),
            values.as_mut_ptr().cast::<u8>(),
            n * std::mem::size_of::<T>(),
        );
    }
    let shape: Vec<i64> = view.shape.to_vec();
    OrtTensor::from_array((shape, values))
        .map(|t| t.into_dyn())
        .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", view.name)))
}

/// An ONNX Runtime value holding a copy of `view` (already checked against the spec).
pub fn to_value(view: &TensorView<'_>) -> Result<DynValue> {
    match view.dtype {
        DType::F32 => typed::<f32>(view),
        DType::F64 => typed::<f64>(view),
        DType::I8 => typed::<i8>(view),
        DType::I16 => typed::<i16>(view),
        DType::I32 => typed::<i32>(view),
        DType::I64 => typed::<i64>(view),
        DType::U8 => typed::<u8>(view),
        DType::U16 => typed::<u16>(view),
        DType::U32 => typed::<u32>(view),
        DType::U64 => typed::<u64>(view),
        DType::BOOL => {
            if view.data.iter().any(|b| *b > 1) {
                return Err(Error::invalid_input(format!(
                    "input `{}`: bool elements must be 0 or 1",
                    view.name
                )));
            }
            typed::<bool>(view)
        }
        other => Err(Error::unsupported(format!(
            "input `{}`: dtype {other} is not supported by this plugin",
            view.name
        ))),
    }
}

fn bytes<T: PrimitiveTensorElementType + Copy>(
    name: &str,
    value: &Value,
    dtype: DType,
) -> Result<Tensor> {
    let (shape, data) = value
        .try_extract_tensor::<T>()
        .map_err(|e| Error::runtime(format!("output `{name}`: {e}")))?;
    // SAFETY: viewing initialised plain values as their bytes (little-endian host).
    let raw = unsafe {
        std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
    };
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape: shape.iter().copied().collect(),
        data: raw.to_vec(),
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
        TensorElementType::Float32 => bytes::<f32>(name, value, DType::F32),
        TensorElementType::Float64 => bytes::<f64>(name, value, DType::F64),
        TensorElementType::Int8 => bytes::<i8>(name, value, DType::I8),
        TensorElementType::Int16 => bytes::<i16>(name, value, DType::I16),
        TensorElementType::Int32 => bytes::<i32>(name, value, DType::I32),
        TensorElementType::Int64 => bytes::<i64>(name, value, DType::I64),
        TensorElementType::Uint8 => bytes::<u8>(name, value, DType::U8),
        TensorElementType::Uint16 => bytes::<u16>(name, value, DType::U16),
        TensorElementType::Uint32 => bytes::<u32>(name, value, DType::U32),
        TensorElementType::Uint64 => bytes::<u64>(name, value, DType::U64),
        TensorElementType::Bool => bytes::<bool>(name, value, DType::BOOL),
        other => Err(Error::runtime(format!(
            "output `{name}` has element type {other:?}"
        ))),
    }
}
