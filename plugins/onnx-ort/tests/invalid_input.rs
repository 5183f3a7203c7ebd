//! Inputs ONNX Runtime refuses while running come back as `INVALID_INPUT` (a 400 on HTTP), not
//! as runtime errors: MiniLM (models/minilm, from `scripts/fetch-models.py`) given token ids
//! beyond its vocabulary and an attention mask of another length than its ids; the session
//! still answers valid inputs afterwards.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{serde_json::json, ErrorKind, LoadOptions, Tensor};
use cyxwiz_testkit::cdylib_path;

fn minilm() -> (PluginLibrary, LoadedModel) {
    let models = cyxwiz_e2e::models_dir();
    let library = models.join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    assert!(library.is_file(), "run scripts/fetch-models.py");
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_onnx_ort")).unwrap();
    let options = LoadOptions {
        options: json!({"library": library}),
        ..LoadOptions::default()
    };
    let model = lib
        .load(&models.join("minilm/model.onnx"), &options)
        .unwrap();
    (lib, model)
}

/// `input_ids`, `attention_mask` and (if the model has it) `token_type_ids`, one row each.
fn inputs(model: &LoadedModel, ids: &[i64], mask_len: usize) -> Vec<Tensor> {
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
            vec![1, ids.len() as i64],
            &vec![0; ids.len()],
        ));
    }
    tensors
}

fn run(model: &LoadedModel, tensors: &[Tensor]) -> cyxwiz_sdk::Result<Vec<Tensor>> {
    let views: Vec<_> = tensors.iter().map(Tensor::view).collect();
    model.infer(&views)
}

#[test]
fn out_of_range_ids_and_mismatched_masks_are_invalid_input() {
    let (_lib, model) = minilm();
    let ok = [101, 7592, 2088, 102];
    assert!(run(&model, &inputs(&model, &ok, 4)).is_ok());

    for bad in [30_522, 1_000_000, -5_000_000] {
        let e = run(&model, &inputs(&model, &[101, bad, 102], 3)).unwrap_err();
        println!("id {bad}: {e}");
        assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "id {bad}: {e}");
        assert!(e.message.starts_with("ONNX Runtime"), "{e}");
    }

    // Shapes that do not fit together: a mask shorter than the ids, token type ids of
    // another length.
    let mut cases = vec![("short mask", inputs(&model, &ok, 3))];
    if model
        .info()
        .inputs
        .iter()
        .any(|s| s.name == "token_type_ids")
    {
        let mut t = inputs(&model, &ok, 4);
        t[2] = Tensor::from_i64("token_type_ids", vec![1, 2], &[0, 0]);
        cases.push(("short type ids", t));
    }
    for (what, tensors) in cases {
        match run(&model, &tensors) {
            Ok(_) => panic!("{what}: ran"),
            Err(e) => {
                println!("{what}: {e}");
                assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{what}: {e}");
            }
        }
    }

    // The session is unharmed.
    let out = run(&model, &inputs(&model, &ok, 4)).unwrap();
    assert_eq!(out[0].shape, vec![1, 4, 384]);
}
