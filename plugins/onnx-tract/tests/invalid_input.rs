//! What a caller sends that the model cannot take is `INVALID_INPUT` (a 400 on HTTP), never a
//! runtime error, and the model keeps answering: the rapidocr classifier (from
//! `scripts/fetch-models.py`) with one symbolic plan (`input_shapes` pinned but the batch) and
//! with plans per shape.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{serde_json::json, ErrorKind, LoadOptions, Tensor};
use cyxwiz_testkit::cdylib_path;

#[test]
fn shapes_the_classifier_cannot_take_are_invalid_input() {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_tract")).unwrap();
    let path = cyxwiz_e2e::models_dir().join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let image = |shape: &[i64]| {
        let n: i64 = shape.iter().product();
        Tensor::from_f32("x", shape.to_vec(), &vec![0.5; n as usize])
    };
    for options in [json!({"input_shapes": {"x": [-1, 3, 48, 192]}}), json!({})] {
        let model = lib
            .load(
                &path,
                &LoadOptions {
                    options: options.clone(),
                    ..LoadOptions::default()
                },
            )
            .unwrap();
        for bad in [vec![0, 3, 48, 192], vec![1, 3, 0, 0], vec![1, 4, 48, 192]] {
            let e = model.infer(&[image(&bad).view()]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{options} {bad:?}: {e}");
        }
        let out = model.infer(&[image(&[2, 3, 48, 192]).view()]).unwrap();
        assert_eq!(out[0].shape, vec![2, 2], "{options}");
    }
}
