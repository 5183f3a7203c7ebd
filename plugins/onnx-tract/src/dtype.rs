//! Element types: tract's `DatumType` to and from the SDK's `DType`.

use cyxwiz_sdk::DType;
use tract_onnx::prelude::DatumType;

/// The SDK dtype of a tract datum type, if the node can exchange it.
pub fn to_sdk(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::F32 => DType::F32,
        DatumType::F64 => DType::F64,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::I16 => DType::I16,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::U8 => DType::U8,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        DatumType::Bool => DType::BOOL,
        _ => return None,
    })
}

/// The tract datum type of an SDK dtype, if tract has it.
pub fn to_tract(dt: DType) -> Option<DatumType> {
    Some(match dt {
        DType::F32 => DatumType::F32,
        DType::F64 => DatumType::F64,
        DType::F16 => DatumType::F16,
        DType::I8 => DatumType::I8,
        DType::I16 => DatumType::I16,
        DType::I32 => DatumType::I32,
        DType::I64 => DatumType::I64,
        DType::U8 => DatumType::U8,
        DType::U16 => DatumType::U16,
        DType::U32 => DatumType::U32,
        DType::U64 => DatumType::U64,
        DType::BOOL => DatumType::Bool,
        _ => return None,
    })
}
