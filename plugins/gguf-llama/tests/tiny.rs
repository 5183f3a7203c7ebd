//! gguf-llama mechanics on the tiny random llama (`tests/fixtures/make_gguf.py`), which loads
//! and decodes in milliseconds: the conformance kit, embeddings of batches whose token count
//! does not divide by the number of texts, isolation between many concurrent sequences
//! (greedy and seeded sampling) and the context limit. What the model says is
//! noise; that it says the same thing alone and in a crowded batch is the point.
#![allow(clippy::unwrap_used)]

mod common;

use common::{greedy, load_tiny, run, tiny_llama};
use cyxwiz_sdk::{
    serde_json::json,
    testkit::{cdylib_path, Conformance, Sample},
    ErrorKind, FinishReason, GenerateRequest, LoadOptions, SamplingParams,
};

#[test]
fn gguf_llama_passes_the_testkit_on_the_tiny_model() {
    let report = Conformance::new(cdylib_path("cyxwiz_plugin_gguf_llama"))
        .sample(Sample::new(tiny_llama()).options(LoadOptions {
            options: json!({"slots": 4, "context_length": 256, "queue": 64}),
            ..LoadOptions::default()
        }))
        .run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn embedding_batches_of_any_token_count_do_not_abort() {
    // llama.cpp aborted (GGML_ASSERT in its mean-pooling graph) when a batch's token count
    // was not a multiple of its number of texts; this byte-level vocabulary makes odd totals.
    let model = load_tiny(json!({"slots": 1, "context_length": 256}));
    for texts in [
        vec!["hello world", "the user"],
        vec!["a b c d e f g h i j k l m n o p q", "x y", "zz"],
        vec!["one", "two", "three", "four", "five", "six", "seven"],
    ] {
        let out = model.embed(&texts).unwrap();
        assert_eq!(out.data.len(), out.dim * texts.len());
        for row in out.data.chunks(out.dim) {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{norm}");
        }
    }
}

#[test]
fn eight_concurrent_sequences_never_see_each_other() {
    let model = load_tiny(json!({"slots": 8, "context_length": 256, "queue": 32}));
    let mut requests: Vec<GenerateRequest> = (0..4)
        .map(|i| greedy(&format!("hello world number {i} is"), 40 + i * 7))
        .collect();
    // Seeded sampling draws from each sequence's own sampler chain.
    requests.extend((0..4).map(|i| GenerateRequest {
        prompt: format!("the user {i} said"),
        params: SamplingParams {
            max_tokens: 48,
            temperature: 0.9,
            top_k: 40,
            seed: Some(1000 + i as u64),
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }));
    let alone: Vec<(String, u32)> = requests
        .iter()
        .map(|r| {
            let (text, out) = run(&model, r);
            (text, out.completion_tokens)
        })
        .collect();
    for round in 0..3 {
        let together: Vec<(String, u32)> = std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|r| {
                    s.spawn(|| {
                        let (text, out) = run(&model, r);
                        (text, out.completion_tokens)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(
                a, t,
                "round {round}: request {i} changed when batched with 7 others"
            );
        }
    }
    // Different prompts gave different streams: a leak could not hide behind equal outputs.
    let mut distinct: Vec<&String> = alone.iter().map(|(t, _)| t).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), alone.len());
}

#[test]
fn context_limit_is_a_clear_error_and_length_finish_is_reported() {
    let model = load_tiny(json!({"slots": 2, "context_length": 64, "queue": 4}));
    let long = "hello world ".repeat(40);
    let err = model
        .generate(&greedy(&long, 8), &mut |_: &str| true)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(err.message.contains("64"), "{err}");
    // The model keeps serving after the refusal.
    let (_, out) = run(&model, &greedy("hello", 5));
    assert_eq!(out.finish_reason, FinishReason::LENGTH);
    assert_eq!(out.completion_tokens, 5);
}
