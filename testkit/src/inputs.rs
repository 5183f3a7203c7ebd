//! Valid inputs generated from a model's specs, and output comparison with tolerances.

use cyxwiz_sdk::{DType, ModelInfo, Tensor};

/// Inputs matching `info`'s specs: dynamic dimensions become 1; floats count up from 0 to 1
/// (`arange(n) / n`, as the ONNX backend tests feed them); every other dtype is zero.
pub fn generated_inputs(info: &ModelInfo) -> Result<Vec<Tensor>, String> {
    info.inputs
        .iter()
        .map(|spec| {
            let shape: Vec<i64> = spec
                .shape
                .iter()
                .map(|d| if *d < 0 { 1 } else { *d })
                .collect();
            let n = shape.iter().product::<i64>().max(0) as usize;
            let size = spec.dtype.size_of().ok_or_else(|| {
                format!("input `{}` has unknown dtype {}", spec.name, spec.dtype.0)
            })?;
            let data = match spec.dtype {
                DType::F32 => (0..n)
                    .flat_map(|i| (i as f32 / n as f32).to_le_bytes())
                    .collect(),
                DType::F64 => (0..n)
                    .flat_map(|i| (i as f64 / n as f64).to_le_bytes())
                    .collect(),
                _ => vec![0u8; n * size],
            };
            Ok(Tensor {
                name: spec.name.clone(),
                dtype: spec.dtype,
                shape,
                data,
            })
        })
        .collect()
}

fn as_f64(t: &Tensor) -> Result<Vec<f64>, String> {
    let d = &t.data;
    Ok(match t.dtype {
        DType::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        DType::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        DType::I64 => d
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64)
            .collect(),
        DType::I32 => d
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        DType::U8 | DType::BOOL => d.iter().map(|v| *v as f64).collect(),
        DType::I8 => d.iter().map(|v| *v as i8 as f64).collect(),
        other => return Err(format!("cannot compare tensors of dtype {other}")),
    })
}

/// Checks `|got - want| <= atol + rtol * |want|` element-wise, with equal shapes.
pub fn allclose(got: &Tensor, want: &Tensor, rtol: f32, atol: f32) -> Result<(), String> {
    if got.shape != want.shape {
        return Err(format!(
            "`{}`: shape {:?}, expected {:?}",
            got.name, got.shape, want.shape
        ));
    }
    let (g, w) = (as_f64(got)?, as_f64(want)?);
    if g.len() != w.len() {
        return Err(format!(
            "`{}`: {} values, expected {}",
            got.name,
            g.len(),
            w.len()
        ));
    }
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        // NaN in either value fails the comparison and counts as a mismatch.
        let within = err <= atol as f64 + rtol as f64 * b.abs();
        if !within && worst.is_none_or(|(_, e, _)| err.is_nan() || err > e) {
            worst = Some((i, err, *b));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, err, b)) => Err(format!(
            "`{}`: element {i} differs by {err:e} from {b} (rtol {rtol}, atol {atol})",
            got.name
        )),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub(crate) fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
