//! The training section against a plugin without a training backend: every check fails
//! cleanly with the backend's reason, nothing panics or hangs.
#![allow(clippy::unwrap_used)]

use cyxwiz_testkit::{cdylib_path, TrainingConformance};
use std::time::Duration;

#[test]
fn a_plugin_without_a_training_backend_fails_every_training_check() {
    let report = TrainingConformance::new(cdylib_path("cyxwiz_plugin_test_faulty"))
        .timeout(Duration::from_secs(60))
        .run();
    println!("{report}");
    assert!(!report.passed());
    let jobs: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.name.starts_with("training: the loss falls"))
        .collect();
    assert_eq!(jobs.len(), 7);
    for check in jobs {
        let why = check.outcome.as_ref().unwrap_err();
        assert!(why.contains("no training backend"), "{}: {why}", check.name);
    }
    // The panic self-test does not need a backend.
    let panic = report
        .checks
        .iter()
        .find(|c| c.name.contains("PANICKED"))
        .unwrap();
    assert!(panic.outcome.is_ok(), "{panic:?}");
}
