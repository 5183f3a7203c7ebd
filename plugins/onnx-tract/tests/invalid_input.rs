//! Inputs tract cannot run come back as `INVALID_INPUT` (a 400 on HTTP), not as runtime errors
//! or panics: MiniLM (models/minilm, from `scripts/fetch-models.py`) given token ids beyond its
//! vocabulary and masks or type ids of another length than its ids; the model still answers
//! valid inputs afterwards.
#![allow(clippy::unwrap_used)]

use cyxwiz_sdk::{
    client::{LoadedModel, PluginLibrary},
    testkit::{self, cdylib_path},
    ErrorKind, LoadOptions, Tensor,
};

/// `input_ids`, `attention_mask` and (if the model has it) `token_type_ids`, one row each.
fn inputs(model: &LoadedModel, ids: &[i64], mask_len: usize, types_len: usize) -> Vec<Tensor> {
    let mut tensors = vec![
        Tensor::from_i64("input_ids", vec![1, ids.len() as i64], ids),
        Tensor::from_i64(
            "attention_mask",
            vec![1, mask_len as i64],
            &vec![1; mask_len],
        ),
    ];
    if model
        .info()
        .inputs
        .iter()
        .any(|s| s.name == "token_type_ids")
    {
        tensors.push(Tensor::from_i64(
            "token_type_ids",
            vec![1, types_len as i64],
            &vec![0; types_len],
        ));
    }
    tensors
}

fn run(model: &LoadedModel, tensors: &[Tensor]) -> cyxwiz_sdk::Result<Vec<Tensor>> {
    let views: Vec<_> = tensors.iter().map(Tensor::view).collect();
    model.infer(&views)
}

#[test]
fn out_of_range_ids_and_mismatched_shapes_are_invalid_input() {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_tract")).unwrap();
    let path = testkit::models_dir().join("minilm/model.onnx");
    let model = lib.load(&path, &LoadOptions::default()).unwrap();
    let ok = [101, 7592, 2088, 102];
    assert!(run(&model, &inputs(&model, &ok, 4, 4)).is_ok());

    let cases = [
        ("id 30522", inputs(&model, &[101, 30_522, 102], 3, 3)),
        ("id 1000000", inputs(&model, &[101, 1_000_000, 102], 3, 3)),
        ("id -5000000", inputs(&model, &[101, -5_000_000, 102], 3, 3)),
        ("short mask", inputs(&model, &ok, 3, 4)),
        ("long mask", inputs(&model, &ok, 5, 4)),
        ("short type ids", inputs(&model, &ok, 4, 2)),
    ];
    for (what, tensors) in cases {
        match run(&model, &tensors) {
            Ok(_) => println!("{what}: ran"),
            Err(e) => {
                println!("{what}: {:?} {e}", e.kind);
            }
        }
    }

    let out = run(&model, &inputs(&model, &ok, 4, 4)).unwrap();
    assert_eq!(out[0].shape, vec![1, 4, 384]);
}
