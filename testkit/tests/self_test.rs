//! The kit against plugins that are wrong on purpose (`tests/fixtures/faulty-plugin`): each
//! misbehaviour must fail a check whose message names it, a hang must be reported by the
//! deadline (not hang this test), and the same plugin without a fault must pass.
#![allow(clippy::unwrap_used)]

use cyxwiz_sdk::{serde_json::json, LoadOptions};
use cyxwiz_testkit::{cdylib_path, Conformance, Report, Sample};
use std::time::{Duration, Instant};

/// Short enough for the hang cases, long enough for every check of the fixture on a busy
/// machine (each takes milliseconds).
const TIMEOUT: Duration = Duration::from_secs(10);

fn run(fault: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.faulty");
    std::fs::write(&model, r#"{"width": 4}"#).unwrap();
    let options = LoadOptions {
        options: json!({ "fault": fault }),
        ..LoadOptions::default()
    };
    let report = Conformance::new(cdylib_path("cyxwiz_plugin_test_faulty"))
        .timeout(TIMEOUT)
        .sample(Sample::new(&model).options(options))
        .run();
    println!("fault {fault}:\n{report}");
    report
}

/// Asserts a failed check whose name contains `check` says `says`.
fn reported(report: &Report, check: &str, says: &str) {
    let failures = report.failures();
    assert!(
        failures
            .iter()
            .any(|c| c.name.contains(check)
                && c.outcome.as_ref().is_err_and(|why| why.contains(says))),
        "expected a failed check `{check}` saying `{says}`; the report:\n{report}"
    );
}

#[test]
fn a_good_plugin_passes() {
    let report = run("none");
    report.assert_passed();
    // Every capability was exercised, hostile files included.
    for check in [
        "m.faulty: infer",
        "ordinary inputs",
        "concurrent streams",
        "hostile file: random bytes",
    ] {
        assert!(
            report.checks.iter().any(|c| c.name.contains(check)),
            "no `{check}` check ran:\n{report}"
        );
    }
}

#[test]
fn wrong_output_shapes_are_reported() {
    let report = run("wrong-shape");
    reported(
        &report,
        "m.faulty: infer",
        "output `y` has shape [1, 3], declared [?, 4]",
    );
}

#[test]
fn a_panic_on_ordinary_inputs_is_reported() {
    let report = run("panic-on-batch");
    reported(
        &report,
        "ordinary inputs",
        "a batch of 2: the plugin panicked",
    );
    // The kit's own trigger and the valid input still pass: only the variation found it.
    assert!(!report
        .failures()
        .iter()
        .any(|c| c.name == "panic becomes PANICKED"));
}

#[test]
fn mixed_up_streams_are_reported() {
    let report = run("mixed-streams");
    reported(
        &report,
        "concurrent streams each get their own text",
        "streams are mixed up",
    );
    // One stream at a time is fine: only concurrency shows it.
    assert!(!report
        .failures()
        .iter()
        .any(|c| c.name == "m.faulty: generate"));
}

#[test]
fn a_hanging_infer_is_reported_by_the_deadline() {
    let started = Instant::now();
    let report = run("hang");
    reported(&report, "m.faulty: infer", "did not return within 10 s");
    // The rest of that sample is skipped rather than waited for again.
    reported(&report, "generate", "skipped");
    assert!(
        started.elapsed() < 6 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_plugin_that_hangs_on_a_hostile_file_is_reported() {
    let started = Instant::now();
    let report = run("hostile-hang");
    // The first file it wrongly accepts (the directory) hangs it; the rest are skipped.
    reported(
        &report,
        "hostile file: a directory",
        "loaded without error (it must be refused); then the call did not return within 10 s",
    );
    reported(&report, "hostile file: random bytes", "skipped");
    assert!(
        started.elapsed() < 6 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_plugin_that_panics_on_a_hostile_file_is_reported() {
    let report = run("hostile-panic");
    reported(
        &report,
        "hostile file: random bytes",
        "then infer panicked: plugin panicked in infer",
    );
    reported(&report, "hostile file: random bytes", "generate panicked");
}
