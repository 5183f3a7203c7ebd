//! The library-level checks (metadata, self-tests, runtime) and the per-sample driver: load
//! the sample, then run each check of its declared capabilities under the deadline.

use crate::{tensor, text, watchdog, Report, Sample};
use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{shape_pattern, Capabilities, ErrorKind, SelfTest, Tensor};
use std::{sync::Arc, time::Duration};

/// A check's result: `Err` says what is wrong.
pub(crate) type Outcome = Result<(), String>;

/// Runs checks one after another, each on its own thread under the deadline, and records
/// them. After a call that did not return, the remaining checks are recorded as skipped: the
/// model (or plugin) is stuck, and every further call would only wait for the deadline again.
pub(crate) struct Runner<'r> {
    report: &'r mut Report,
    limit: Duration,
    hung: bool,
}

impl<'r> Runner<'r> {
    pub(crate) fn new(report: &'r mut Report, limit: Duration) -> Self {
        Self {
            report,
            limit,
            hung: false,
        }
    }

    /// Records an outcome computed without calling the plugin.
    pub(crate) fn record(&mut self, name: impl Into<String>, outcome: Outcome) -> bool {
        self.report.record(name, outcome)
    }

    /// Runs `job` under the deadline; on success returns its value and records nothing, on
    /// failure records `name` as failed and returns `None`.
    pub(crate) fn value<T: Send + 'static>(
        &mut self,
        name: impl Into<String>,
        job: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Option<T> {
        if self.hung {
            self.report
                .record(name, Err("skipped: an earlier call did not return".into()));
            return None;
        }
        let outcome = match watchdog::within(self.limit, job) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.hung = watchdog::is_timeout(&e);
                Err(e)
            }
        };
        match outcome {
            Ok(value) => Some(value),
            Err(e) => {
                self.report.record(name, Err(e));
                None
            }
        }
    }

    /// Runs and records one check.
    pub(crate) fn check(
        &mut self,
        name: impl Into<String>,
        job: impl FnOnce() -> Outcome + Send + 'static,
    ) -> bool {
        let name = name.into();
        match self.value(name.clone(), job) {
            Some(()) => self.report.record(name, Ok(())),
            None => false,
        }
    }
}

pub(crate) fn expect_kind<T>(
    what: &str,
    result: cyxwiz_sdk::Result<T>,
    kind: ErrorKind,
) -> Outcome {
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
pub(crate) fn runtime(lib: &PluginLibrary, options: &serde_json::Value) -> Outcome {
    match lib.runtime(options) {
        Ok(Some(text)) if text.contains('\n') => Err(format!("runtime is not one line: {text:?}")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("runtime failed: {e}")),
    }
}

pub(crate) fn metadata(lib: &PluginLibrary) -> Outcome {
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

pub(crate) fn self_test_echo(lib: &PluginLibrary) -> Outcome {
    lib.self_test(SelfTest::ECHO).map_err(|e| e.to_string())
}

pub(crate) fn panic_caught(lib: &PluginLibrary) -> Outcome {
    expect_kind(
        "self-test panic",
        lib.self_test(SelfTest::PANIC),
        ErrorKind::PANICKED,
    )?;
    // The library must stay usable after a caught panic.
    lib.self_test(SelfTest::ECHO)
        .map_err(|e| format!("after a caught panic: {e}"))
}

/// Loads `sample` and runs every check its capabilities call for, under `limit` each.
pub(crate) fn sample(
    lib: &Arc<PluginLibrary>,
    sample: &Sample,
    threads: usize,
    limit: Duration,
    report: &mut Report,
) {
    let label = sample
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| sample.model.display().to_string());
    let mut run = Runner::new(report, limit);
    let (l, path, options) = (lib.clone(), sample.model.clone(), sample.options.clone());
    let loaded = run.value(format!("load {label}"), move || {
        l.load(&path, &options).map_err(|e| e.to_string())
    });
    let Some(model) = loaded else {
        return;
    };
    let model = Arc::new(model);
    run.record(format!("load {label}"), Ok(()));
    let caps = model.info().capabilities;
    let plugin_caps = lib.metadata().capabilities;
    run.record(
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
        tensor::checks(&model, sample, threads, &label, &mut run);
    }
    if caps.contains(Capabilities::TEXT_GENERATION) {
        text::generate_checks(&model, threads, &label, &mut run);
    }
    if caps.contains(Capabilities::EMBEDDINGS) {
        text::embed_checks(&model, threads, &label, &mut run);
    }
}

/// Runs `f` on `threads` threads at once, four times each; the first failure wins.
pub(crate) fn concurrently(threads: usize, f: impl Fn() -> Outcome + Sync) -> Outcome {
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

/// Checks outputs against the model's declared output specs: dtype, rank and every fixed
/// dimension, and that the data fills the shape.
pub(crate) fn check_outputs(model: &LoadedModel, outputs: &[Tensor]) -> Outcome {
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
            let fits = spec.shape.len() == out.shape.len()
                && spec
                    .shape
                    .iter()
                    .zip(&out.shape)
                    .all(|(want, got)| *want < 0 || want == got);
            if !fits {
                return Err(format!(
                    "output `{}` has shape {:?}, declared {}",
                    out.name,
                    out.shape,
                    shape_pattern(&spec.shape)
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
