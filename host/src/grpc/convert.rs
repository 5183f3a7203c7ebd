//! Conversions between the protocol's messages and the node's types: tensors and dtypes,
//! deployment status, deployments.

use crate::deployments::{DeploymentView, Status as DeployStatus};
use cyxwiz_proto::protocol::{DataType, DeploymentStatus, TensorData, TensorInfo};
use cyxwiz_sdk::{DType, Tensor, TensorSpec};
use tonic::Status;

/// The protocol dtype for ours, if the protocol has one.
pub fn data_type(dtype: DType) -> DataType {
    match dtype {
        DType::F32 => DataType::Float32,
        DType::F64 => DataType::Float64,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::U8 => DataType::Uint8,
        _ => DataType::Unknown,
    }
}

/// Our dtype for a protocol one.
pub fn dtype(data_type: i32) -> Option<DType> {
    match DataType::try_from(data_type).ok()? {
        DataType::Float32 => Some(DType::F32),
        DataType::Float64 => Some(DType::F64),
        DataType::Int32 => Some(DType::I32),
        DataType::Int64 => Some(DType::I64),
        DataType::Uint8 => Some(DType::U8),
        DataType::Unknown => None,
    }
}

/// A request tensor, checked: known dtype, non-negative shape, bytes matching the shape.
pub fn tensor_in(t: TensorData) -> Result<Tensor, Status> {
    let dtype = dtype(t.dtype).ok_or_else(|| {
        Status::invalid_argument(format!(
            "input `{}`: dtype {} is not one of FLOAT32, FLOAT64, INT32, INT64, UINT8",
            t.name, t.dtype
        ))
    })?;
    let mut count: usize = 1;
    for d in &t.shape {
        let d = usize::try_from(*d).map_err(|_| {
            Status::invalid_argument(format!(
                "input `{}`: shape {:?} has a negative dimension",
                t.name, t.shape
            ))
        })?;
        count = count.checked_mul(d).ok_or_else(|| {
            Status::invalid_argument(format!("input `{}`: shape {:?} overflows", t.name, t.shape))
        })?;
    }
    let expected = count.saturating_mul(dtype.size_of().unwrap_or(1));
    if t.data.len() != expected {
        return Err(Status::invalid_argument(format!(
            "input `{}`: shape {:?} of {} needs {expected} bytes, got {}",
            t.name,
            t.shape,
            dtype.as_str(),
            t.data.len()
        )));
    }
    Ok(Tensor {
        name: t.name,
        dtype,
        shape: t.shape,
        data: t.data,
    })
}

/// Widens integer elements to a protocol type: `width` bytes in, signedness `signed`.
fn widen(data: &[u8], width: usize, signed: bool, out_width: usize) -> Vec<u8> {
    data.chunks_exact(width)
        .flat_map(|c| {
            let mut buf = [0u8; 8];
            buf[..width].copy_from_slice(c);
            let negative = signed && c[width - 1] & 0x80 != 0;
            if negative {
                for b in &mut buf[width..] {
                    *b = 0xff;
                }
            }
            buf[..out_width].to_vec()
        })
        .collect()
}

/// A response tensor. Types the protocol lacks are widened losslessly (bool and int8/16,
/// uint16 to INT32; uint32 to INT64); float16, bfloat16 and uint64 are refused.
pub fn tensor_out(t: Tensor) -> Result<TensorData, Status> {
    let (data_type, data) = match t.dtype {
        DType::BOOL => (DataType::Uint8, t.data),
        DType::I8 => (DataType::Int32, widen(&t.data, 1, true, 4)),
        DType::I16 => (DataType::Int32, widen(&t.data, 2, true, 4)),
        DType::U16 => (DataType::Int32, widen(&t.data, 2, false, 4)),
        DType::U32 => (DataType::Int64, widen(&t.data, 4, false, 8)),
        other => match data_type(other) {
            DataType::Unknown => {
                return Err(Status::failed_precondition(format!(
                    "output `{}` is {}, which the protocol's DataType cannot carry",
                    t.name,
                    other.as_str()
                )))
            }
            known => (known, t.data),
        },
    };
    Ok(TensorData {
        name: t.name,
        shape: t.shape,
        dtype: data_type as i32,
        data,
    })
}

/// A tensor spec as `TensorInfo`.
pub fn tensor_info(spec: &TensorSpec) -> TensorInfo {
    TensorInfo {
        shape: spec.shape.clone(),
        dtype: data_type(spec.dtype) as i32,
        name: spec.name.clone(),
    }
}

/// Our deployment status as the protocol's.
pub fn deployment_status(status: DeployStatus) -> DeploymentStatus {
    match status {
        DeployStatus::Pending => DeploymentStatus::Pending,
        DeployStatus::Loading => DeploymentStatus::Loading,
        DeployStatus::Ready => DeploymentStatus::Ready,
        DeployStatus::Running => DeploymentStatus::Running,
        DeployStatus::Stopped => DeploymentStatus::Stopped,
        DeployStatus::Failed => DeploymentStatus::Failed,
    }
}

/// The protocol format name of a deployment (from its path).
pub fn format_of(view: &DeploymentView) -> String {
    if view.path.is_dir() {
        return "onnx".to_string();
    }
    view.path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_checked_and_widened() {
        let ok = tensor_in(TensorData {
            name: "x".into(),
            shape: vec![1, 2],
            dtype: DataType::Float32 as i32,
            data: vec![0; 8],
        });
        assert!(ok.is_ok());
        let short = tensor_in(TensorData {
            name: "x".into(),
            shape: vec![1, 2],
            dtype: DataType::Float32 as i32,
            data: vec![0; 7],
        })
        .unwrap_err();
        assert_eq!(short.code(), tonic::Code::InvalidArgument);
        assert!(
            short.message().contains("needs 8 bytes, got 7"),
            "{}",
            short.message()
        );
        let negative = tensor_in(TensorData {
            name: "x".into(),
            shape: vec![-1],
            dtype: DataType::Float32 as i32,
            data: vec![],
        })
        .unwrap_err();
        assert!(negative.message().contains("negative"));
        let widened = tensor_out(Tensor {
            name: "y".into(),
            dtype: DType::I8,
            shape: vec![2],
            data: vec![0xff, 0x02],
        })
        .unwrap();
        assert_eq!(widened.dtype, DataType::Int32 as i32);
        assert_eq!(
            widened.data,
            [(-1i32).to_le_bytes(), 2i32.to_le_bytes()].concat()
        );
        let half = tensor_out(Tensor {
            name: "h".into(),
            dtype: DType::F16,
            shape: vec![1],
            data: vec![0, 0],
        })
        .unwrap_err();
        assert_eq!(half.code(), tonic::Code::FailedPrecondition);
    }
}
