//! Tests of JSON tensors: the input forms, linear-time shape checks, the bounds, encoding.

use super::*;
use cyxwiz_sdk::TensorSpec;
use serde_json::json;

fn info(inputs: &[(&str, DType)]) -> ModelInfo {
    ModelInfo {
        inputs: inputs
            .iter()
            .map(|(n, d)| TensorSpec {
                name: n.to_string(),
                dtype: *d,
                shape: vec![-1, 2],
            })
            .collect(),
        ..ModelInfo::default()
    }
}

#[test]
fn nested_lists_take_the_spec_dtype() {
    let t = parse_inputs(
        &json!({"ids": [[1, 2], [3, 4]]}),
        &info(&[("ids", DType::I64)]),
    )
    .unwrap();
    assert_eq!(t[0].dtype, DType::I64);
    assert_eq!(t[0].shape, vec![2, 2]);
    assert_eq!(t[0].data.len(), 32);
}

#[test]
fn bare_value_binds_to_the_only_input_and_round_trips() {
    let t = parse_inputs(&json!([[0.5, -1.0]]), &info(&[("x", DType::F32)])).unwrap();
    let back = tensor_to_json(&t[0]);
    assert_eq!(
        back,
        json!({"dtype": "float32", "shape": [1, 2], "data": [0.5, -1.0]})
    );
}

#[test]
fn explicit_form_and_errors_name_the_input() {
    let i = info(&[("x", DType::F32)]);
    let ok = parse_inputs(
        &json!({"x": {"dtype": "int32", "shape": [2], "data": [1, 2]}}),
        &i,
    )
    .unwrap();
    assert_eq!(ok[0].dtype, DType::I32);
    let e = parse_inputs(&json!({"x": {"shape": [3], "data": [1, 2]}}), &i).unwrap_err();
    assert!(
        e.0.contains("`x`") && e.0.contains("needs 3 values, got 2"),
        "{e}"
    );
    let e = parse_inputs(&json!({"x": [[1], [2, 3]]}), &i).unwrap_err();
    assert!(e.0.contains("ragged"), "{e}");
    let e = parse_inputs(&json!({"x": "hello"}), &i).unwrap_err();
    assert!(e.0.contains("a string"), "{e}");
    let e = parse_inputs(
        &json!({"x": {"dtype": "uint8", "shape": [1], "data": [300]}}),
        &i,
    )
    .unwrap_err();
    assert!(e.0.contains("does not fit"), "{e}");
    let two = info(&[("a", DType::F32), ("b", DType::F32)]);
    let e = parse_inputs(&json!([1, 2]), &two).unwrap_err();
    assert!(e.0.contains("2 inputs"), "{e}");
}

#[test]
fn half_floats_decode() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x0000), 0.0);
}

fn limits(max_elements: usize) -> JsonLimits {
    JsonLimits { max_elements }
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn the_100_byte_freeze_is_linear_and_bounded_by_depth() {
    // The attack: one-element lists nested 26 deep took 15.7 s, 60 deep never ended.
    let started = std::time::Instant::now();
    let one = info(&[("x", DType::F32)]);
    let deep = JsonInputs::from_slice(nested(26).as_bytes(), JsonLimits::default())
        .unwrap()
        .into_tensors(&one)
        .unwrap();
    assert_eq!(deep[0].shape, vec![1; 26]);
    let ok = JsonInputs::from_slice(nested(MAX_DEPTH).as_bytes(), JsonLimits::default());
    assert!(ok.is_ok(), "{ok:?}");
    for depth in [MAX_DEPTH + 1, 60, 120] {
        let e =
            JsonInputs::from_slice(nested(depth).as_bytes(), JsonLimits::default()).unwrap_err();
        assert!(e.0.contains("deeper than 32 levels"), "{e}");
    }
    // Deeper than serde_json's own recursion limit: still our message, no stack trouble.
    let e = JsonInputs::from_slice(nested(100_000).as_bytes(), JsonLimits::default()).unwrap_err();
    assert!(e.0.contains("deeper than 32 levels"), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_element_cap_names_its_bound() {
    let i = info(&[("x", DType::F32)]);
    let e = JsonInputs::from_slice(br#"{"x": [[1, 2], [3, 4], [5, 6]]}"#, limits(5)).unwrap_err();
    assert_eq!(
        e.0,
        "input `x` holds too many numbers: `max_tensor_elements` is 5 per request"
    );
    // The cap is per request, across inputs.
    let two = info(&[("a", DType::F32), ("b", DType::F32)]);
    let e = JsonInputs::from_slice(br#"{"a": [1, 2, 3], "b": [4, 5, 6]}"#, limits(5)).unwrap_err();
    assert!(e.0.contains("input `b`"), "{e}");
    let ok = JsonInputs::from_slice(br#"{"a": [1, 2], "b": [3, 4]}"#, limits(4))
        .unwrap()
        .into_tensors(&two)
        .unwrap();
    assert_eq!(ok.len(), 2);
    let t = JsonInputs::from_slice(b"[1, 2, 3, 4, 5]", limits(5))
        .unwrap()
        .into_tensors(&i)
        .unwrap();
    assert_eq!(t[0].shape, vec![5]);
}

#[test]
fn every_sibling_is_checked_against_the_first_path() {
    let i = info(&[("x", DType::F32)]);
    let shape = |text: &str| {
        JsonInputs::from_slice(text.as_bytes(), JsonLimits::default())
            .and_then(|inputs| inputs.into_tensors(&i))
            .map(|t| t[0].shape.clone())
    };
    assert_eq!(shape("[[1, 2, 3], [4, 5, 6]]"), Ok(vec![2, 3]));
    assert_eq!(shape("[[], []]"), Ok(vec![2, 0]));
    assert_eq!(shape("[]"), Ok(vec![0]));
    assert_eq!(shape("7"), Ok(vec![]));
    assert_eq!(shape("[true, false]"), Ok(vec![2]));
    for ragged in [
        "[[1], [2, 3]]",
        "[1, [2]]",
        "[[2], 1]",
        "[[], [1]]",
        "[[1], []]",
        "[[[1]], [2]]",
        "[[1, 2], [[3], [4]]]",
    ] {
        let e = shape(ragged).unwrap_err();
        assert!(e.0.contains("ragged"), "{ragged}: {e}");
    }
    let e = shape(r#"[1, "two"]"#).unwrap_err();
    assert_eq!(e.0, "`inputs`: data holds a string, expected numbers");
    let e = shape(r#"{"x": [1, {"a": 1}]}"#).unwrap_err();
    assert_eq!(e.0, "input `x`: data holds an object, expected numbers");
    let e = shape(r#"{"x": {"shape": [1], "data": {"deeper": {}}}}"#).unwrap_err();
    assert!(e.0.contains("objects nest too deep"), "{e}");
    let e = shape(r#"{"x": [1], "x": [2]}"#).unwrap_err();
    assert_eq!(e.0, "input `x` is given twice");
}

#[test]
fn explicit_data_may_nest_freely_and_big_integers_stay_exact() {
    let i = info(&[("x", DType::I64)]);
    let t = JsonInputs::from_slice(
        br#"{"x": {"shape": [3], "data": [[1], [2, 3]]}}"#,
        JsonLimits::default(),
    )
    .unwrap()
    .into_tensors(&i)
    .unwrap();
    assert_eq!(t[0].data, Tensor::from_i64("x", vec![3], &[1, 2, 3]).data);
    let big = JsonInputs::from_slice(
        b"[9007199254740993, -9223372036854775808]",
        JsonLimits::default(),
    )
    .unwrap()
    .into_tensors(&i)
    .unwrap();
    assert_eq!(
        big[0].data,
        Tensor::from_i64("x", vec![2], &[9_007_199_254_740_993, i64::MIN]).data
    );
    let u = info(&[("x", DType::U64)]);
    let max = JsonInputs::from_slice(b"[18446744073709551615]", JsonLimits::default())
        .unwrap()
        .into_tensors(&u)
        .unwrap();
    assert_eq!(max[0].data, u64::MAX.to_le_bytes().to_vec());
    let e = JsonInputs::from_slice(b"[1.5]", JsonLimits::default())
        .unwrap()
        .into_tensors(&i)
        .unwrap_err();
    assert_eq!(e.0, "input `x` is int64, but 1.5 is not an integer");
    let e = JsonInputs::from_slice(br#"{"x": [1]} trailing"#, JsonLimits::default()).unwrap_err();
    assert!(e.0.contains("trailing"), "{e}");
}
