//! Tensor-inference checks on a loaded sample: outputs match the declared specs (and the
//! reference), ordinary variations of valid inputs never panic, wrong inputs are
//! `INVALID_INPUT`, and concurrent calls agree.

use crate::{
    checks::{check_outputs, concurrently, expect_kind, Outcome, Runner},
    inputs::{self, noise},
    Sample,
};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{DType, ErrorKind, ModelInfo, Tensor};
use std::sync::Arc;

fn infer(model: &LoadedModel, inputs: &[Tensor]) -> cyxwiz_sdk::Result<Vec<Tensor>> {
    let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
    model.infer(&views)
}

/// Records every tensor check of `sample` on `model`.
pub(crate) fn checks(
    model: &Arc<LoadedModel>,
    sample: &Sample,
    threads: usize,
    label: &str,
    run: &mut Runner<'_>,
) {
    let valid = match &sample.inputs {
        Some(given) => Ok(given.clone()),
        None => inputs::generated_inputs(model.info()),
    };
    let valid = match valid {
        Ok(v) => Arc::new(v),
        Err(e) => {
            run.record(format!("{label}: inputs"), Err(e));
            return;
        }
    };
    let (m, v) = (model.clone(), valid.clone());
    let Some(first) = run.value(format!("{label}: infer"), move || {
        infer(&m, &v).map_err(|e| e.to_string())
    }) else {
        return;
    };
    run.record(format!("{label}: infer"), check_outputs(model, &first));
    if let Some(expected) = &sample.expected {
        let outcome = expected.iter().enumerate().try_for_each(|(i, want)| {
            let got = first
                .iter()
                .find(|t| t.name == want.name)
                .or_else(|| first.get(i))
                .ok_or_else(|| format!("no output for reference `{}`", want.name))?;
            inputs::allclose(got, want, sample.rtol, sample.atol)
        });
        run.record(format!("{label}: outputs match the reference"), outcome);
    }
    let variants = ordinary_variants(model.info(), &valid);
    let m = model.clone();
    run.check(
        format!("{label}: ordinary inputs (zeros, negative, random, a batch of 2)"),
        move || ordinary(&m, variants),
    );
    for (what, inputs) in wrong_inputs(&valid) {
        let m = model.clone();
        run.check(format!("{label}: {what} is INVALID_INPUT"), move || {
            expect_kind(what, infer(&m, &inputs), ErrorKind::INVALID_INPUT)
        });
    }
    let (m, first) = (model.clone(), Arc::new(first));
    run.check(format!("{label}: {threads} threads infer"), move || {
        concurrently(threads, || {
            let out = infer(&m, &valid).map_err(|e| e.to_string())?;
            if out.len() != first.len() {
                return Err("concurrent call returned a different number of outputs".into());
            }
            out.iter()
                .zip(first.iter())
                .try_for_each(|(a, b)| inputs::allclose(a, b, 1e-5, 1e-6))
        })
    });
}

/// `t` with every float value replaced by `f(index, value)`; other dtypes unchanged.
fn map_floats(t: &Tensor, f: &dyn Fn(usize, f64) -> f64) -> Tensor {
    let mut out = t.clone();
    out.data = match t.dtype {
        DType::F32 => t
            .data
            .chunks_exact(4)
            .enumerate()
            .flat_map(|(i, b)| {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (f(i, f64::from(v)) as f32).to_le_bytes()
            })
            .collect(),
        DType::F64 => t
            .data
            .chunks_exact(8)
            .enumerate()
            .flat_map(|(i, b)| {
                let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                f(i, v).to_le_bytes()
            })
            .collect(),
        _ => return out,
    };
    out
}

/// Valid inputs varied the way ordinary callers vary them: all zeros, negative and random
/// floats, and (for inputs whose spec has a dynamic first dimension) a batch of two copies.
pub(crate) fn ordinary_variants(info: &ModelInfo, valid: &[Tensor]) -> Vec<(String, Vec<Tensor>)> {
    let mut variants = vec![(
        "zeros".to_string(),
        valid
            .iter()
            .map(|t| Tensor {
                data: vec![0; t.data.len()],
                ..t.clone()
            })
            .collect(),
    )];
    if valid
        .iter()
        .any(|t| t.dtype == DType::F32 || t.dtype == DType::F64)
    {
        variants.push((
            "negative values".to_string(),
            valid
                .iter()
                .map(|t| map_floats(t, &|_, v| -1.0 - v.abs()))
                .collect(),
        ));
        let random = noise(valid.iter().map(|t| t.data.len()).sum(), 0x5eed);
        variants.push((
            "random values in [-1, 1)".to_string(),
            valid
                .iter()
                .map(|t| {
                    map_floats(t, &|i, _| {
                        f64::from(random.get(i).copied().unwrap_or(0)) / 128.0 - 1.0
                    })
                })
                .collect(),
        ));
    }
    let batch_dynamic = |t: &Tensor| {
        info.inputs
            .iter()
            .find(|s| s.name == t.name)
            .and_then(|s| s.shape.first())
            .is_some_and(|d| *d < 0)
            && !t.shape.is_empty()
    };
    if valid.iter().any(batch_dynamic) {
        variants.push((
            "a batch of 2".to_string(),
            valid
                .iter()
                .map(|t| {
                    if !batch_dynamic(t) {
                        return t.clone();
                    }
                    let mut doubled = t.clone();
                    doubled.shape[0] *= 2;
                    doubled.data.extend_from_slice(&t.data);
                    doubled
                })
                .collect(),
        ));
    }
    variants
}

/// Each variant may be refused with an error (the model may need its real inputs), but
/// must never panic, and what it answers must fit the declared outputs.
fn ordinary(model: &LoadedModel, variants: Vec<(String, Vec<Tensor>)>) -> Outcome {
    let mut problems = Vec::new();
    for (what, inputs) in variants {
        match infer(model, &inputs) {
            Ok(out) => {
                if let Err(e) = check_outputs(model, &out) {
                    problems.push(format!("{what}: {e}"));
                }
            }
            Err(e) if e.kind == ErrorKind::PANICKED => {
                problems.push(format!("{what}: the plugin panicked: {}", e.message));
            }
            Err(e) if e.message.trim().is_empty() => {
                problems.push(format!("{what}: {} error with an empty message", e.kind));
            }
            Err(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn wrong_inputs(valid: &[Tensor]) -> Vec<(&'static str, Vec<Tensor>)> {
    let Some(target) = valid.first() else {
        return Vec::new();
    };
    let with_first = |changed: Tensor| {
        let mut all = valid.to_vec();
        all[0] = changed;
        all
    };
    let other_dtype = match target.dtype {
        DType::F32 => DType::I32,
        DType::I32 => DType::F32,
        DType::I64 => DType::F64,
        DType::F64 => DType::I64,
        _ => DType::U8,
    };
    let mut wrong = target.clone();
    wrong.dtype = other_dtype;
    if let Some(size) = other_dtype.size_of() {
        let n = target.element_count().unwrap_or(0);
        wrong.data = vec![0; n * size];
    }
    vec![
        ("dtype mismatch", with_first(wrong)),
        ("shape mismatch", {
            let mut t = target.clone();
            t.shape.push(1);
            t.shape.insert(0, 1);
            with_first(t)
        }),
        ("empty batch", {
            let mut t = target.clone();
            if let Some(d) = t.shape.first_mut() {
                *d = 0;
            }
            t.data.clear();
            with_first(t)
        }),
        ("data shorter than shape", {
            let mut t = target.clone();
            let keep = t.data.len().saturating_sub(t.dtype.size_of().unwrap_or(1));
            t.data.truncate(keep);
            with_first(t)
        }),
        ("missing input", valid[1..].to_vec()),
        ("unknown input", {
            let mut all = valid.to_vec();
            let mut extra = target.clone();
            extra.name = "__cyxwiz_no_such_input__".into();
            all.push(extra);
            all
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::TensorSpec;

    #[test]
    fn ordinary_variants_keep_shapes_valid_and_double_dynamic_batches() {
        let info = ModelInfo::tensors(
            vec![TensorSpec::f32("x", [-1, 2]), TensorSpec::i64("fixed", [3])],
            vec![],
        );
        let valid = vec![
            Tensor::from_f32("x", vec![1, 2], &[0.0, 0.5]),
            Tensor::from_i64("fixed", vec![3], &[1, 2, 3]),
        ];
        let variants = ordinary_variants(&info, &valid);
        let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "zeros",
                "negative values",
                "random values in [-1, 1)",
                "a batch of 2"
            ]
        );
        for (name, inputs) in &variants {
            let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
            info.check_inputs(&views)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let negative = variants[1].1[0].to_f32_vec().unwrap();
        assert!(negative.iter().all(|v| *v <= -1.0), "{negative:?}");
        let random = variants[2].1[0].to_f32_vec().unwrap();
        assert!(random.iter().all(|v| (-1.0..1.0).contains(v)), "{random:?}");
        let batch = &variants[3].1;
        assert_eq!(batch[0].shape, vec![2, 2]);
        assert_eq!(batch[0].to_f32_vec().unwrap(), vec![0.0, 0.5, 0.0, 0.5]);
        assert_eq!(batch[1], valid[1], "a fixed first dimension is not batched");
    }

    #[test]
    fn integer_only_models_get_zeros_and_batches() {
        let info = ModelInfo::tensors(vec![TensorSpec::i64("ids", [-1, -1])], vec![]);
        let valid = vec![Tensor::from_i64("ids", vec![1, 3], &[5, 6, 7])];
        let names: Vec<String> = ordinary_variants(&info, &valid)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["zeros", "a batch of 2"]);
    }
}
