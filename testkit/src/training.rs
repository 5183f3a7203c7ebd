//! The training conformance section: drives a plugin's training backend through the kit's
//! own in-memory host on small seeded problems and checks what every backend must do:
//! the loss falls (each optimizer, both losses, an MLP and a conv net), STOP and PAUSE are
//! obeyed with the right checkpoints and no batch after a stop, a resumed job continues
//! exactly (the next step's loss within 1e-5 of an uninterrupted run's), jobs that cannot
//! run are clean errors, a panic is `PANICKED`, and the final weights served through the
//! plugin's own loader score as training's last evaluation did. Every job runs under a
//! deadline ([`TrainingConformance::timeout`]). Nothing here is specific to one backend.
//!
//! ```no_run
//! use cyxwiz_testkit::{cdylib_path, TrainingConformance};
//!
//! TrainingConformance::new(cdylib_path("cyxwiz_plugin_train_candle"))
//!     .run()
//!     .assert_passed();
//! ```

mod checks;
mod data;
mod host;

use crate::{checks::panic_caught, watchdog, Report};
use checks::Kit;
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{training::OptimizerKind, Capabilities};
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

/// The training conformance suite for one plugin library.
#[derive(Clone, Debug)]
pub struct TrainingConformance {
    library: PathBuf,
    device: String,
    timeout: Duration,
}

/// A scratch directory (job work dirs, weights files) removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cyxwiz-testkit-training-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TrainingConformance {
    /// A suite for the library at `library`, training on `cpu`.
    pub fn new(library: impl Into<PathBuf>) -> Self {
        Self {
            library: library.into(),
            device: "cpu".into(),
            timeout: Duration::from_secs(300),
        }
    }

    /// The device every job asks for (`cpu`, `cuda:0`); default `cpu`.
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// How long one training job (or one call) may take before the backend is reported as
    /// hanging; default 300 s. After a hang the remaining checks are recorded as skipped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs every check and returns the report (it never panics on plugin misbehaviour).
    pub fn run(&self) -> Report {
        let mut report = Report::default();
        let Some((kit, _scratch)) = self.open(&mut report) else {
            return report;
        };
        let (blobs, images) = checks::datasets();
        let opt = data::optimizer;
        let mut hung = false;
        let mut check =
            |report: &mut Report,
             name: String,
             f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
                let outcome = if hung {
                    Err("skipped: an earlier job did not return".into())
                } else {
                    // Each check runs its jobs under the deadline already; this bounds the rest.
                    match watchdog::within(self.timeout.saturating_mul(8), f) {
                        Ok(outcome) => outcome,
                        Err(e) => Err(e),
                    }
                };
                hung |= outcome.as_ref().is_err_and(|e| watchdog::is_timeout(e));
                report.record(format!("training: {name}"), outcome);
            };
        let cases = [
            ("sgd", data::mlp(opt(OptimizerKind::Sgd, 0.05)), &blobs),
            ("adam", data::mlp(opt(OptimizerKind::Adam, 0.01)), &blobs),
            ("adamw", data::mlp(opt(OptimizerKind::AdamW, 0.01)), &blobs),
            (
                "rmsprop",
                data::mlp(opt(OptimizerKind::RmsProp, 0.005)),
                &blobs,
            ),
            ("mse", data::mlp_mse(opt(OptimizerKind::Adam, 0.02)), &blobs),
            (
                "every flat layer",
                data::mlp_mixed(opt(OptimizerKind::Adam, 0.01)),
                &blobs,
            ),
            (
                "conv net",
                data::cnn(opt(OptimizerKind::Adam, 0.02)),
                &images,
            ),
        ];
        for (name, spec, data) in cases {
            let (k, d) = (kit.clone(), data.clone());
            check(
                &mut report,
                format!("the loss falls ({name}, {:?})", spec.optimizer.kind),
                Box::new(move || checks::learns(&k, name, spec, &d)),
            );
        }
        let mixed = data::mlp_mixed(opt(OptimizerKind::Adam, 0.01));
        let (k, s, d) = (kit.clone(), mixed.clone(), blobs.clone());
        check(
            &mut report,
            "STOP is obeyed".into(),
            Box::new(move || checks::cancel(&k, s, &d)),
        );
        let (k, s, d) = (kit.clone(), mixed.clone(), blobs.clone());
        check(
            &mut report,
            "PAUSE is obeyed".into(),
            Box::new(move || checks::pause(&k, s, &d)),
        );
        let (k, s, d) = (kit.clone(), mixed.clone(), blobs.clone());
        check(
            &mut report,
            "resume is exact (MLP)".into(),
            Box::new(move || checks::resume(&k, s, &d)),
        );
        let cnn = data::cnn(opt(OptimizerKind::Sgd, 0.05));
        let (k, s, d) = (kit.clone(), cnn.clone(), images.clone());
        check(
            &mut report,
            "resume is exact (conv net)".into(),
            Box::new(move || checks::resume(&k, s, &d)),
        );
        let (k, s, d) = (kit.clone(), mixed.clone(), blobs.clone());
        check(
            &mut report,
            "bad jobs are clean errors".into(),
            Box::new(move || checks::bad_jobs(&k, s, &d)),
        );
        let lib = kit.lib.clone();
        check(
            &mut report,
            "panic becomes PANICKED".into(),
            Box::new(move || panic_caught(&lib)),
        );
        let meta = kit.lib.metadata();
        let loads_weights = meta.capabilities.contains(Capabilities::TENSOR_INFERENCE)
            && meta.extensions().any(|e| e == "safetensors");
        for (name, spec, data) in [("served-mlp", mixed, &blobs), ("served-cnn", cnn, &images)] {
            let label = format!("final weights through the plugin's loader ({name})");
            if !loads_weights {
                report.record(
                    format!("training: {label}: skipped, the plugin loads no .safetensors"),
                    Ok(()),
                );
                continue;
            }
            let (k, d) = (kit.clone(), data.clone());
            check(
                &mut report,
                label,
                Box::new(move || checks::serves_its_weights(&k, name, spec, &d)),
            );
        }
        report
    }

    /// Opens the library and prepares the scratch directory, recording failures.
    fn open(&self, report: &mut Report) -> Option<(Kit, Scratch)> {
        let path = self.library.clone();
        let opened = format!("training: open {}", self.library.display());
        let lib = match watchdog::within(self.timeout, move || PluginLibrary::open(&path)) {
            Ok(Ok(lib)) => Arc::new(lib),
            Ok(Err(e)) => {
                report.record(opened, Err(e.to_string()));
                return None;
            }
            Err(e) => {
                report.record(opened, Err(e));
                return None;
            }
        };
        report.record(opened, Ok(()));
        let scratch = match Scratch::new() {
            Ok(s) => s,
            Err(e) => {
                report.record("training: scratch directory", Err(e.to_string()));
                return None;
            }
        };
        let kit = Kit {
            lib,
            device: self.device.clone(),
            limit: self.timeout,
            scratch: scratch.0.clone(),
        };
        Some((kit, scratch))
    }
}

/// Trains the kit's conv net (two epochs on its synthetic 8x8 images) with the plugin at
/// `library` on `device`, and writes the final checkpoint's weights as the host does
/// (`weights_only`, with the `cyxwiz.model` metadata) to `<dir>/trained.safetensors`: a real
/// weights file for the inference [`Conformance`](crate::Conformance) suite.
pub fn trained_weights(library: &Path, device: &str, dir: &Path) -> Result<PathBuf, String> {
    let lib = Arc::new(PluginLibrary::open(library).map_err(|e| e.to_string())?);
    let kit = Kit {
        lib,
        device: device.into(),
        limit: Duration::from_secs(300),
        scratch: dir.to_path_buf(),
    };
    let (_, images) = checks::datasets();
    let spec = data::cnn(data::optimizer(OptimizerKind::Adam, 0.02));
    let host = kit.run_ok(
        kit.job("trained", spec, 2),
        &images,
        host::Script::default(),
    )?;
    checks::write_weights(&host, dir, "trained")
}
