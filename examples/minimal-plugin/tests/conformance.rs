//! The example plugin passes the SDK conformance kit, and computes what it says.
#![allow(clippy::unwrap_used)]
use cyxwiz_sdk::Tensor;
use cyxwiz_testkit::{cdylib_path, Conformance, Sample};

#[test]
fn example_plugin_passes_the_testkit() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/double.scale");
    let input = Tensor::from_f32("x", vec![2, 3], &[1.0, 2.0, 3.0, -1.0, 0.5, 0.0]);
    let expected = Tensor::from_f32("y", vec![2, 3], &[2.0, 4.0, 6.0, -2.0, 1.0, 0.0]);
    let report = Conformance::new(cdylib_path("cyxwiz_plugin_example_scale"))
        .sample(
            Sample::new(model)
                .inputs(vec![input])
                .expect(vec![expected], 0.0, 0.0),
        )
        .sample(Sample::new(model))
        .run();
    println!("{report}");
    report.assert_passed();
}
