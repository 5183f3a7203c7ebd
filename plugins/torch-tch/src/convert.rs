//! Tensors between the SDK and libtorch: element types, copies in and out, and flattening of
//! `forward`'s return value (a tensor, a scalar, or tuples and lists of them) into outputs.

use cyxwiz_sdk::{DType, Error, Result, Tensor, TensorView};
use tch::{IValue, Kind};

/// The libtorch kind of an SDK dtype.
pub fn to_kind(dtype: DType) -> Option<Kind> {
    Some(match dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::U8 => Kind::Uint8,
        DType::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// The SDK dtype of a libtorch kind.
pub fn to_dtype(kind: Kind) -> Option<DType> {
    Some(match kind {
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Int8 => DType::I8,
        Kind::Int16 => DType::I16,
        Kind::Int => DType::I32,
        Kind::Int64 => DType::I64,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::BOOL,
        _ => return None,
    })
}

fn torch_err(what: &str) -> impl Fn(tch::TchError) -> Error + '_ {
    move |e| Error::runtime(format!("{what}: {}", first_line(&e.to_string())))
}

/// libtorch errors carry a C++ backtrace after the message; the first line is the message.
pub fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown libtorch error")
        .to_string()
}

/// Copies a checked input view into a libtorch tensor.
pub fn tensor_in(view: &TensorView<'_>) -> Result<tch::Tensor> {
    let kind = to_kind(view.dtype).ok_or_else(|| {
        Error::unsupported(format!(
            "input `{}`: dtype {} has no libtorch equivalent",
            view.name, view.dtype
        ))
    })?;
    if view.dtype == DType::BOOL && view.data.iter().any(|b| *b > 1) {
        return Err(Error::invalid_input(format!(
            "input `{}`: bool elements must be 0 or 1",
            view.name
        )));
    }
    tch::Tensor::f_from_data_size(view.data, view.shape, kind)
        .map_err(torch_err(&format!("input `{}`", view.name)))
}

/// Reads a rank-0 view as the scalar a TorchScript `int`, `float` or `bool` argument takes.
pub fn scalar_in(view: &TensorView<'_>, ty: &str) -> Result<IValue> {
    let bytes = view.data;
    let value = match (ty, view.dtype) {
        ("int", DType::I64) => bytes
            .try_into()
            .ok()
            .map(|b: [u8; 8]| IValue::Int(i64::from_le_bytes(b))),
        ("float", DType::F64) => bytes
            .try_into()
            .ok()
            .map(|b: [u8; 8]| IValue::Double(f64::from_le_bytes(b))),
        ("bool", DType::BOOL) => match bytes {
            [0] => Some(IValue::Bool(false)),
            [1] => Some(IValue::Bool(true)),
            _ => None,
        },
        _ => None,
    };
    value.ok_or_else(|| {
        Error::invalid_input(format!(
            "input `{}` is a TorchScript `{ty}`: give one element",
            view.name
        ))
    })
}

/// Copies a libtorch tensor out (to the CPU, contiguous).
pub fn tensor_out(name: String, tensor: &tch::Tensor) -> Result<Tensor> {
    let kind = tensor.kind();
    let dtype = to_dtype(kind).ok_or_else(|| {
        Error::unsupported(format!(
            "output `{name}` has libtorch kind {kind:?}, which the node cannot exchange"
        ))
    })?;
    let cpu = tensor
        .f_to_device(tch::Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(torch_err(&format!("output `{name}`")))?;
    let numel = cpu.numel();
    let size = dtype.size_of().unwrap_or(1);
    let mut data = vec![0u8; numel * size];
    cpu.f_copy_data_u8(&mut data, numel)
        .map_err(torch_err(&format!("output `{name}`")))?;
    Ok(Tensor {
        name,
        dtype,
        shape: cpu.size(),
        data,
    })
}

/// Flattens `forward`'s result: one tensor is `output`; tuples and lists become `output_0`,
/// `output_1`, ... in order (nested ones depth-first); scalars become rank-0 tensors.
pub fn outputs(value: IValue) -> Result<Vec<Tensor>> {
    let mut flat = Vec::new();
    flatten(value, &mut flat)?;
    if flat.len() == 1 {
        let only = flat.remove(0);
        return Ok(vec![Tensor {
            name: "output".into(),
            ..only
        }]);
    }
    Ok(flat
        .into_iter()
        .enumerate()
        .map(|(i, t)| Tensor {
            name: format!("output_{i}"),
            ..t
        })
        .collect())
}

fn flatten(value: IValue, out: &mut Vec<Tensor>) -> Result<()> {
    let scalar = |dtype: DType, data: Vec<u8>| Tensor {
        name: String::new(),
        dtype,
        shape: vec![],
        data,
    };
    match value {
        IValue::Tensor(t) => out.push(tensor_out(String::new(), &t)?),
        IValue::Double(v) => out.push(scalar(DType::F64, v.to_le_bytes().to_vec())),
        IValue::Int(v) => out.push(scalar(DType::I64, v.to_le_bytes().to_vec())),
        IValue::Bool(v) => out.push(scalar(DType::BOOL, vec![u8::from(v)])),
        IValue::TensorList(list) => {
            for t in list {
                out.push(tensor_out(String::new(), &t)?);
            }
        }
        IValue::Tuple(items) | IValue::GenericList(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        other => {
            return Err(Error::unsupported(format!(
                "forward returned a value the node cannot send back: {}",
                ivalue_kind(&other)
            )))
        }
    }
    Ok(())
}

fn ivalue_kind(value: &IValue) -> &'static str {
    match value {
        IValue::None => "None",
        IValue::String(_) | IValue::StringList(_) => "a string",
        IValue::GenericDict(_) => "a dict",
        IValue::Object(_) => "an object",
        IValue::Device(_) => "a device",
        _ => "a list of scalars",
    }
}
