//! A plugin that panics inside a call: the host gets `PANICKED`, the same model keeps
//! answering, and other models are untouched. Uses the host library with the real registry
//! and worker threads over the fixture plugin `tests/fixtures/panic-plugin`.

mod common;

use cyxwiz_node::{
    models::{Engine, ModelWorker, WorkerError},
    plugins::{Registry, SearchDir},
};
use cyxwiz_sdk::{ErrorKind, LoadOptions, Tensor};

fn registry() -> Registry {
    Registry::discover(
        &[SearchDir {
            path: common::target_dir(),
            only_cyxwiz_named: true,
        }],
        Default::default(),
    )
}

#[test]
fn panicking_call_returns_panicked_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let panicky = dir.path().join("m.panicky");
    std::fs::write(&panicky, "panicky").unwrap();
    let scale = dir.path().join("m.scale");
    std::fs::write(&scale, r#"{"factor": 3.0, "width": 2}"#).unwrap();

    let registry = registry();
    let (lib, model) = registry
        .load(&panicky, None, &LoadOptions::default())
        .unwrap();
    assert_eq!(lib.metadata().name, "test-panic");
    let worker =
        ModelWorker::spawn("panicky", "test-panic", Engine::Plain(model), 2, 8, 1).unwrap();
    let (_, model) = registry
        .load(&scale, None, &LoadOptions::default())
        .unwrap();
    let other =
        ModelWorker::spawn("scale", "example-scale", Engine::Plain(model), 1, 8, 1).unwrap();

    for round in 0..3 {
        let err = worker
            .infer_blocking(vec![Tensor::from_f32("x", vec![2], &[-1.0, 5.0])])
            .unwrap_err();
        match err {
            WorkerError::Model(e) => {
                assert_eq!(e.kind, ErrorKind::PANICKED, "round {round}: {e}");
                assert!(e.message.contains("deliberate panic"), "{e}");
                assert!(
                    e.message.contains("src/lib.rs"),
                    "the location is kept: {e}"
                );
            }
            other => panic!("expected a plugin error, got {other}"),
        }
        let ok = worker
            .infer_blocking(vec![Tensor::from_f32("x", vec![2], &[1.0, 5.0])])
            .unwrap();
        assert_eq!(ok[0].to_f32_vec().unwrap(), vec![1.0, 5.0]);
        let y = other
            .infer_blocking(vec![Tensor::from_f32("x", vec![1, 2], &[1.0, 2.0])])
            .unwrap();
        assert_eq!(y[0].to_f32_vec().unwrap(), vec![3.0, 6.0]);
    }
}

#[test]
fn panic_while_loading_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.panicky");
    std::fs::write(&bad, "panic-on-load").unwrap();
    let registry = registry();
    let err = registry
        .load(&bad, None, &LoadOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PANICKED, "{err}");
    assert!(
        err.to_string().contains("deliberate panic while loading"),
        "{err}"
    );
    // The plugin still loads good models afterwards.
    let good = dir.path().join("good.panicky");
    std::fs::write(&good, "panicky").unwrap();
    assert!(registry.load(&good, None, &LoadOptions::default()).is_ok());
}

#[test]
fn the_testkit_reports_the_panic_fixture_panicking_on_ordinary_input() {
    // The fixture panics on a negative first value, an ordinary input the kit now tries: it
    // must fail exactly that check, with the panic's message, and pass every other.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.panicky");
    std::fs::write(&model, "panicky").unwrap();
    let report = cyxwiz_testkit::Conformance::new(common::plugin_lib("cyxwiz_plugin_test_panic"))
        .sample(cyxwiz_testkit::Sample::new(&model))
        .run();
    println!("{report}");
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{report}");
    assert!(failures[0].name.contains("ordinary inputs"), "{report}");
    let why = failures[0].outcome.as_ref().unwrap_err();
    assert!(
        why.contains("negative values: the plugin panicked")
            && why.contains("deliberate panic: negative input"),
        "{report}"
    );
}
