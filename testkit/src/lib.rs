//! The conformance suite every plugin runs: give it the built library and sample models, it
//! checks metadata, loading, every declared capability (outputs against the declared specs,
//! ordinary input variations, concurrent calls and streams that must not mix), wrong inputs,
//! hostile files (refused, and run if they load), a caught panic. Every plugin call runs
//! under a deadline ([`Conformance::timeout`]), so a plugin that hangs is reported, never
//! hangs the suite.
//!
//! ```no_run
//! use cyxwiz_testkit::{cdylib_path, Conformance, Sample};
//!
//! let report = Conformance::new(cdylib_path("cyxwiz_plugin_example"))
//!     .sample(Sample::new("tests/data/model.scale.json"))
//!     .run();
//! report.assert_passed();
//! ```
#![deny(missing_docs)]

mod checks;
mod hostile;
mod inputs;
mod tensor;
mod text;
mod training;
mod watchdog;

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{LoadOptions, Tensor};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

pub use inputs::{allclose, generated_inputs};
pub use text::greedy;
pub use training::{trained_weights, TrainingConformance};

/// A sample model and, optionally, what running it must give.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The model file or directory.
    pub model: PathBuf,
    /// Options to load it with.
    pub options: LoadOptions,
    /// Valid inputs; generated from the input specs when `None` (dynamic dims become 1,
    /// floats count up from 0 to 1, integers are 0).
    pub inputs: Option<Vec<Tensor>>,
    /// Reference outputs, compared with `rtol`/`atol`.
    pub expected: Option<Vec<Tensor>>,
    /// Relative tolerance for `expected`.
    pub rtol: f32,
    /// Absolute tolerance for `expected`.
    pub atol: f32,
}

impl Sample {
    /// A sample with default options, generated inputs and no reference outputs.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            options: LoadOptions::default(),
            inputs: None,
            expected: None,
            rtol: 1e-3,
            atol: 1e-5,
        }
    }

    /// Uses these inputs instead of generated ones.
    pub fn inputs(mut self, inputs: Vec<Tensor>) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Requires these outputs within `rtol`/`atol`.
    pub fn expect(mut self, expected: Vec<Tensor>, rtol: f32, atol: f32) -> Self {
        self.expected = Some(expected);
        self.rtol = rtol;
        self.atol = atol;
        self
    }

    /// Loads with these options.
    pub fn options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }
}

/// One check's result.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `Err` carries why it failed.
    pub outcome: Result<(), String>,
}

/// The results of a conformance run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn record(&mut self, name: impl Into<String>, outcome: Result<(), String>) -> bool {
        let ok = outcome.is_ok();
        self.checks.push(Check {
            name: name.into(),
            outcome,
        });
        ok
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.outcome.is_err()).collect()
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// Panics with the whole report when a check failed.
    ///
    /// # Panics
    /// When any check failed: that is the point, for use in `#[test]`s.
    #[allow(clippy::panic)]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("plugin conformance failed:\n{self}");
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.outcome {
                Ok(()) => writeln!(f, "  ok   {}", check.name)?,
                Err(why) => writeln!(f, "  FAIL {}: {why}", check.name)?,
            }
        }
        let failed = self.failures().len();
        write!(
            f,
            "{} checks, {} passed, {failed} failed",
            self.checks.len(),
            self.checks.len() - failed
        )
    }
}

/// The conformance suite for one plugin library.
#[derive(Clone, Debug)]
pub struct Conformance {
    library: PathBuf,
    samples: Vec<Sample>,
    threads: usize,
    timeout: Duration,
}

impl Conformance {
    /// A suite for the library at `library`.
    pub fn new(library: impl Into<PathBuf>) -> Self {
        Self {
            library: library.into(),
            samples: Vec::new(),
            threads: 8,
            timeout: Duration::from_secs(120),
        }
    }

    /// How long one check (or one call on a hostile file) may take before the plugin is
    /// reported as hanging; default 120 s. After a hang the remaining checks of that sample
    /// are recorded as skipped, and the stuck thread is left behind (the process ends it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a sample model; at least one is required.
    pub fn sample(mut self, sample: Sample) -> Self {
        self.samples.push(sample);
        self
    }

    /// Runs every check and returns the report (it never panics on plugin misbehaviour,
    /// and returns within about [`timeout`](Self::timeout) per check even when the plugin
    /// hangs).
    pub fn run(&self) -> Report {
        let mut report = Report::default();
        let opened = format!("open {}", self.library.display());
        let path = self.library.clone();
        let library = match watchdog::within(self.timeout, move || PluginLibrary::open(&path)) {
            Ok(Ok(lib)) => {
                report.record(opened, Ok(()));
                Arc::new(lib)
            }
            Ok(Err(e)) => {
                report.record(opened, Err(e.to_string()));
                return report;
            }
            Err(e) => {
                report.record(opened, Err(e));
                return report;
            }
        };
        let mut run = checks::Runner::new(&mut report, self.timeout);
        run.record("metadata", checks::metadata(&library));
        let lib = library.clone();
        run.check("self-test echo", move || checks::self_test_echo(&lib));
        if let Some(first) = self.samples.first() {
            let (lib, options) = (library.clone(), first.options.options.clone());
            run.check("runtime answers with the sample's options", move || {
                checks::runtime(&lib, &options)
            });
        }
        let lib = library.clone();
        run.check("panic becomes PANICKED", move || checks::panic_caught(&lib));
        if self.samples.is_empty() {
            run.record(
                "samples",
                Err("the suite needs at least one sample model".into()),
            );
        }
        for sample in &self.samples {
            checks::sample(&library, sample, self.threads, self.timeout, &mut report);
        }
        if let Some(first) = self.samples.first() {
            hostile::run(&library, first, self.timeout, &mut report);
        }
        report
    }
}

/// Finds a cdylib built in this target directory: `lib<crate_name>.so` (or `.dylib`, `.dll`)
/// next to the running test binary or one directory up.
pub fn cdylib_path(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir: Option<&Path> = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join(&file);
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent();
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    PathBuf::from(file)
}
