//! The individual conformance checks: metadata, self-tests, and everything done with a sample
//! model (capabilities, wrong inputs, concurrency).

use crate::{inputs, Report, Sample};
use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{
    Capabilities, DType, ErrorKind, FinishReason, GenerateRequest, SamplingParams, SelfTest, Tensor,
};

type Outcome = Result<(), String>;

fn expect_kind<T>(what: &str, result: cyxwiz_sdk::Result<T>, kind: ErrorKind) -> Outcome {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, expected a {kind} error")),
        Err(e) if e.kind == kind => Ok(()),
        Err(e) => Err(format!(
            "{what}: expected a {kind} error, got {}: {e}",
            e.kind
        )),
    }
}

/// The runtime entry answers (a plugin built before it existed answers nothing, which is
/// fine) and the answer is one line.
pub(super) fn runtime(lib: &PluginLibrary, options: &serde_json::Value) -> Outcome {
    match lib.runtime(options) {
        Ok(Some(text)) if text.contains('\n') => Err(format!("runtime is not one line: {text:?}")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("runtime failed: {e}")),
    }
}

pub(super) fn metadata(lib: &PluginLibrary) -> Outcome {
    let m = lib.metadata();
    let name_ok = !m.name.is_empty()
        && m.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!(
            "name `{}` must be non-empty lower-case ASCII, digits, `-` or `_`",
            m.name
        ));
    }
    let parts: Vec<&str> = m.version.split(['.', '-', '+']).collect();
    if parts.len() < 3 || parts[..3].iter().any(|p| p.parse::<u64>().is_err()) {
        return Err(format!("version `{}` is not semver", m.version));
    }
    if m.formats.is_empty() {
        return Err("no formats declared".into());
    }
    for (format, exts) in &m.formats {
        if format.is_empty() || format.to_lowercase() != *format {
            return Err(format!(
                "format name `{format}` must be non-empty lower case"
            ));
        }
        if exts.is_empty() {
            return Err(format!("format `{format}` declares no file extension"));
        }
        if let Some(bad) = exts
            .iter()
            .find(|e| e.is_empty() || e.starts_with('.') || e.to_lowercase() != **e)
        {
            return Err(format!(
                "extension `{bad}` of `{format}` must be lower case without a dot"
            ));
        }
    }
    if m.capabilities.is_empty() {
        return Err("no capabilities declared".into());
    }
    if m.interface_version != cyxwiz_sdk::INTERFACE_VERSION {
        return Err(format!(
            "built against plugin-api {}, the testkit is {}",
            m.interface_version,
            cyxwiz_sdk::INTERFACE_VERSION
        ));
    }
    Ok(())
}

pub(super) fn self_test_echo(lib: &PluginLibrary) -> Outcome {
    lib.self_test(SelfTest::ECHO).map_err(|e| e.to_string())
}

pub(super) fn panic_caught(lib: &PluginLibrary) -> Outcome {
    expect_kind(
        "self-test panic",
        lib.self_test(SelfTest::PANIC),
        ErrorKind::PANICKED,
    )?;
    // The library must stay usable after a caught panic.
    lib.self_test(SelfTest::ECHO)
        .map_err(|e| format!("after a caught panic: {e}"))
}

/// Runs every per-sample check, recording each one.
pub(super) fn sample(lib: &PluginLibrary, sample: &Sample, threads: usize, report: &mut Report) {
    let label = sample
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| sample.model.display().to_string());
    let model = match lib.load(&sample.model, &sample.options) {
        Ok(m) => m,
        Err(e) => {
            report.record(format!("load {label}"), Err(e.to_string()));
            return;
        }
    };
    report.record(format!("load {label}"), Ok(()));
    let caps = model.info().capabilities;
    let plugin_caps = lib.metadata().capabilities;
    report.record(
        format!("{label}: capabilities"),
        if caps.is_empty() {
            Err("the model declares no capability".into())
        } else if !plugin_caps.contains(caps) {
            Err(format!(
                "model capabilities {caps:?} exceed the plugin's {plugin_caps:?}"
            ))
        } else {
            Ok(())
        },
    );
    if caps.contains(Capabilities::TENSOR_INFERENCE) {
        tensor_checks(&model, sample, threads, &label, report);
    }
    if caps.contains(Capabilities::TEXT_GENERATION) {
        report.record(format!("{label}: generate"), generate(&model));
        report.record(
            format!("{label}: generate cancels"),
            generate_cancel(&model),
        );
        report.record(
            format!("{label}: generate without prompt"),
            expect_kind(
                "empty prompt",
                model.generate(&GenerateRequest::default(), &mut |_: &str| true),
                ErrorKind::INVALID_INPUT,
            ),
        );
        report.record(
            format!("{label}: {threads} threads generate"),
            concurrently(threads, || generate(&model)),
        );
    }
    if caps.contains(Capabilities::EMBEDDINGS) {
        report.record(format!("{label}: embed"), embed(&model));
        report.record(
            format!("{label}: embed empty batch"),
            expect_kind("empty batch", model.embed(&[]), ErrorKind::INVALID_INPUT),
        );
        report.record(
            format!("{label}: {threads} threads embed"),
            concurrently(threads, || embed(&model)),
        );
    }
}

fn concurrently(threads: usize, f: impl Fn() -> Outcome + Sync) -> Outcome {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| (0..4).try_for_each(|_| f())))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| "a calling thread panicked".to_string())?
        })
    })
}

fn check_outputs(model: &LoadedModel, outputs: &[Tensor]) -> Outcome {
    let info = model.info();
    if outputs.is_empty() {
        return Err("infer returned no outputs".into());
    }
    for out in outputs {
        out.view().check_len().map_err(|e| e.to_string())?;
        if let Some(spec) = info.outputs.iter().find(|s| s.name == out.name) {
            if spec.dtype != out.dtype {
                return Err(format!(
                    "output `{}` is {}, declared {}",
                    out.name, out.dtype, spec.dtype
                ));
            }
            if spec.shape.len() != out.shape.len() {
                return Err(format!(
                    "output `{}` has shape {:?}, declared rank {}",
                    out.name,
                    out.shape,
                    spec.shape.len()
                ));
            }
        } else if !info.outputs.is_empty() {
            return Err(format!(
                "output `{}` is not among the declared outputs",
                out.name
            ));
        }
    }
    Ok(())
}

fn tensor_checks(
    model: &LoadedModel,
    sample: &Sample,
    threads: usize,
    label: &str,
    report: &mut Report,
) {
    let valid = match &sample.inputs {
        Some(given) => Ok(given.clone()),
        None => inputs::generated_inputs(model.info()),
    };
    let valid = match valid {
        Ok(v) => v,
        Err(e) => {
            report.record(format!("{label}: inputs"), Err(e));
            return;
        }
    };
    let views: Vec<_> = valid.iter().map(Tensor::view).collect();
    let first = match model.infer(&views) {
        Ok(out) => out,
        Err(e) => {
            report.record(format!("{label}: infer"), Err(e.to_string()));
            return;
        }
    };
    report.record(format!("{label}: infer"), check_outputs(model, &first));
    if let Some(expected) = &sample.expected {
        let outcome = expected.iter().enumerate().try_for_each(|(i, want)| {
            let got = first
                .iter()
                .find(|t| t.name == want.name)
                .or_else(|| first.get(i))
                .ok_or_else(|| format!("no output for reference `{}`", want.name))?;
            inputs::allclose(got, want, sample.rtol, sample.atol)
        });
        report.record(format!("{label}: outputs match the reference"), outcome);
    }
    wrong_inputs(model, &valid, label, report);
    report.record(
        format!("{label}: {threads} threads infer"),
        concurrently(threads, || {
            let out = model.infer(&views).map_err(|e| e.to_string())?;
            if out.len() != first.len() {
                return Err("concurrent call returned a different number of outputs".into());
            }
            out.iter()
                .zip(&first)
                .try_for_each(|(a, b)| inputs::allclose(a, b, 1e-5, 1e-6))
        }),
    );
}

fn wrong_inputs(model: &LoadedModel, valid: &[Tensor], label: &str, report: &mut Report) {
    let Some(target) = valid.first() else {
        return;
    };
    let run = |inputs: Vec<Tensor>| {
        let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
        model.infer(&views)
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
    let cases: Vec<(&str, Vec<Tensor>)> = vec![
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
    ];
    for (what, inputs) in cases {
        report.record(
            format!("{label}: {what} is INVALID_INPUT"),
            expect_kind(what, run(inputs), ErrorKind::INVALID_INPUT),
        );
    }
}

fn generate(model: &LoadedModel) -> Outcome {
    let request = GenerateRequest {
        prompt: "The capital of France is".into(),
        params: SamplingParams {
            max_tokens: 8,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    let mut pieces = 0usize;
    let out = model
        .generate(&request, &mut |_: &str| {
            pieces += 1;
            true
        })
        .map_err(|e| e.to_string())?;
    if out.completion_tokens == 0 || out.completion_tokens > 8 {
        return Err(format!(
            "completion_tokens {} outside 1..=8",
            out.completion_tokens
        ));
    }
    if pieces == 0 && out.finish_reason == FinishReason::LENGTH {
        return Err("no text reached the sink".into());
    }
    if out.finish_reason != FinishReason::STOP && out.finish_reason != FinishReason::LENGTH {
        return Err(format!("finish reason {:?}", out.finish_reason));
    }
    if out.prompt_tokens == 0 {
        return Err("prompt_tokens is 0".into());
    }
    Ok(())
}

fn generate_cancel(model: &LoadedModel) -> Outcome {
    let request = GenerateRequest {
        prompt: "Count from one to one hundred:".into(),
        params: SamplingParams {
            max_tokens: 64,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    let out = model
        .generate(&request, &mut |_: &str| false)
        .map_err(|e| e.to_string())?;
    if out.finish_reason != FinishReason::CANCELLED && out.finish_reason != FinishReason::STOP {
        return Err(format!(
            "sink returned false, finish reason {:?} after {} tokens",
            out.finish_reason, out.completion_tokens
        ));
    }
    if out.completion_tokens > 2 {
        return Err(format!(
            "sink returned false at once but {} tokens were generated",
            out.completion_tokens
        ));
    }
    Ok(())
}

fn embed(model: &LoadedModel) -> Outcome {
    let out = model
        .embed(&["hello world", "a completely different sentence"])
        .map_err(|e| e.to_string())?;
    if out.dim == 0 || out.data.len() != 2 * out.dim {
        return Err(format!(
            "dim {} with {} values for 2 texts",
            out.dim,
            out.data.len()
        ));
    }
    if out.data.iter().any(|v| !v.is_finite()) {
        return Err("non-finite values".into());
    }
    let rows: Vec<&[f32]> = out.rows().collect();
    if rows[0] == rows[1] {
        return Err("two different texts gave the same vector".into());
    }
    Ok(())
}
