//! gguf-llama mechanics on the tiny random llama (`tests/fixtures/make_gguf.py`), which loads
//! and decodes in milliseconds: the conformance kit, embeddings of batches whose token count
//! does not divide by the number of texts, isolation between many concurrent sequences
//! (greedy and seeded sampling) and the context limit; and the hostile cases: a sink that
//! says stop (exactly one piece, no token more), a panicking sink, absurd thread counts and
//! other load options, megabyte prompts, and many long texts to embed. What the model says is
//! noise; that it says the same thing alone and in a crowded batch is the point.
#![allow(clippy::unwrap_used)]

mod common;

use common::{greedy, load_tiny, run, tiny_llama, try_load};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{
    serde_json::json, ChatMessage, ErrorKind, FinishReason, GenerateRequest, LoadOptions,
    SamplingParams,
};
use cyxwiz_testkit::{cdylib_path, Conformance, Sample};

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

/// Pieces a greedy run of `prompt` delivers within `max_tokens` tokens.
fn pieces_within(model: &LoadedModel, prompt: &str, max_tokens: u32) -> usize {
    let mut pieces = 0;
    model
        .generate(&greedy(prompt, max_tokens), &mut |_: &str| {
            pieces += 1;
            true
        })
        .unwrap();
    pieces
}

#[test]
fn a_sink_that_says_stop_is_never_called_again_and_the_stream_stops_within_a_step() {
    // The attack: a client that goes away after k pieces while other streams keep the engine
    // busy. The engine used to run ahead of the caller's sink, so the stream went on for up to
    // 20 tokens after the sink said stop (and the sink kept being called). Now: the sink is
    // called exactly k times and at most one more token is decoded.
    let model = load_tiny(json!({"slots": 6, "context_length": 256, "queue": 16}));
    let prompt = "hello world, the user is";
    // Tokens needed for k pieces, from uncancelled greedy runs: after a stop at piece k, the
    // stream may finish the one piece it was allowed ahead, no more.
    let mut tokens_for = [0u32; 7];
    for (k, need) in tokens_for.iter_mut().enumerate().skip(1) {
        *need = (1..=64)
            .find(|&t| pieces_within(&model, prompt, t) >= k)
            .expect("64 tokens give 6 pieces");
    }
    /// Stops the background streams however the test ends (a failed assertion included).
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Background streams, so cancellations race with full batches.
        for i in 0..3 {
            let (model, stop) = (&model, &stop);
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    run(model, &greedy(&format!("background {i} says"), 200));
                }
            });
        }
        for round in 0..40 {
            for k in 1..=5 {
                let (need, most) = (tokens_for[k], tokens_for[k + 1]);
                let mut calls = 0;
                let out = model
                    .generate(&greedy(prompt, 200), &mut |_: &str| {
                        calls += 1;
                        calls < k
                    })
                    .unwrap();
                assert_eq!(calls, k, "round {round}: sink called after it said stop");
                assert_eq!(out.finish_reason, FinishReason::CANCELLED, "round {round}");
                assert!(
                    (need..=most).contains(&out.completion_tokens),
                    "round {round}: a stop at piece {k} ({need} tokens) must end the stream \
                     within one piece ({most} tokens), but {} tokens were generated",
                    out.completion_tokens
                );
            }
        }
    });
}

#[test]
fn a_panicking_sink_stops_its_stream_and_frees_its_slot() {
    let model = load_tiny(json!({"slots": 1, "context_length": 256, "queue": 4}));
    // The client side turns a panic in the sink into "stop" (it must not unwind through the
    // plugin); the one slot must be free again for the next request.
    let out = model
        .generate(&greedy("hello", 200), &mut |_: &str| -> bool {
            panic!("sink failure (expected by this test)")
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::CANCELLED);
    let (_, out) = run(&model, &greedy("hello", 5));
    assert_eq!(out.completion_tokens, 5);
}

#[test]
fn threads_beyond_the_cpus_are_refused_before_llama_cpp_runs() {
    // The attack: `threads` 2147483647, then a chat request: llama.cpp died of "double free or
    // corruption", taking the node with it.
    let cores = std::thread::available_parallelism().unwrap().get();
    for (threads, options, key) in [
        (i32::MAX as u32, json!({}), "`threads`"),
        (cores as u32 + 1, json!({}), "`threads`"),
        (0, json!({"threads_batch": i32::MAX}), "`threads_batch`"),
        (0, json!({"slots": 100_000}), "`slots`"),
        (0, json!({"context_length": u32::MAX}), "`context_length`"),
        (0, json!({"queue": u64::MAX}), "`queue`"),
        (
            0,
            json!({"embed_batch_tokens": 100_000}),
            "`embed_batch_tokens`",
        ),
    ] {
        let load = LoadOptions {
            threads,
            options: options.clone(),
            ..LoadOptions::default()
        };
        let err = try_load(&tiny_llama(), &load).expect_err("refused");
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{options}: {err}");
        assert!(err.message.contains(key), "{options}: {err}");
    }
    let err = try_load(
        &tiny_llama(),
        &LoadOptions {
            threads: i32::MAX as u32,
            ..LoadOptions::default()
        },
    )
    .expect_err("refused");
    assert!(
        err.message.contains(&format!("at most {cores}")),
        "the bound is named: {err}"
    );
    // At the bound the model loads and chats.
    let model = try_load(
        &tiny_llama(),
        &LoadOptions {
            threads: cores as u32,
            options: json!({"threads_batch": cores, "slots": 1, "context_length": 128}),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let chat = GenerateRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hello".into(),
        }],
        params: SamplingParams {
            max_tokens: 4,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    assert!(run(&model, &chat).1.prompt_tokens > 0);
}

#[test]
fn a_megabyte_prompt_is_refused_by_its_bytes_before_tokenizing() {
    let model = load_tiny(json!({"slots": 1, "context_length": 64, "queue": 4}));
    let huge = "hello world ".repeat((7 << 20) / 12);
    let chat = GenerateRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: huge.clone(),
        }],
        ..greedy("", 8)
    };
    for (what, request) in [("prompt", greedy(&huge, 8)), ("messages", chat)] {
        let started = std::time::Instant::now();
        let err = model.generate(&request, &mut |_: &str| true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
        // The byte check names the bytes and the context (the token check names tokens).
        assert!(
            err.message
                .contains(&format!("the {what} is {} bytes", huge.len()))
                || err
                    .message
                    .contains(&format!("the {what} are {} bytes", huge.len())),
            "{err}"
        );
        assert!(err.message.contains("context holds 64"), "{err}");
        println!("{what}: refused in {:?}", started.elapsed());
    }
    // Just under the byte bound, the token count decides, as before.
    let err = model
        .generate(&greedy(&"hello world ".repeat(40), 8), &mut |_: &str| true)
        .unwrap_err();
    assert!(
        err.message.contains("tokens, but the context holds 64"),
        "{err}"
    );
}

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn many_long_texts_embed_in_budgeted_batches() {
    // The attack: 32+ texts near the context length in one request. The embedding context was
    // sized to all their tokens at once (7800 here; its buffers, the attention mask among them,
    // grow with the square: the peak rose by 151 MB even for this tiny model, 5 to 21 GB for
    // real ones). Now batches hold at most `embed_batch_tokens` (the peak rises by 2 MB).
    let model = load_tiny(json!({"slots": 1, "context_length": 256, "embed_batch_tokens": 256}));
    let texts: Vec<String> = (0..40)
        .map(|i| format!("{i:02}{}", "z".repeat(240)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let before = peak_rss();
    let out = model.embed(&refs).unwrap();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(out.data.len(), out.dim * texts.len());
    assert!(
        grown < 96 << 20,
        "embedding 40 texts grew the peak by {} MB",
        grown >> 20
    );
    // Each text's vector is what it gets alone: batching changes nothing but memory.
    for (i, row) in out.data.chunks(out.dim).enumerate().step_by(13) {
        let alone = model.embed(&[refs[i]]).unwrap();
        let cos: f32 = row.iter().zip(&alone.data).map(|(a, b)| a * b).sum();
        assert!(cos > 0.9999, "text {i}: cosine {cos}");
    }
    // One text longer than the budget: refused, naming both numbers.
    let long = "z".repeat(300);
    let err = model.embed(&["short", &long]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(
        err.message.contains("input 1 is 302 tokens")
            && err.message.contains("at most 256 tokens")
            && err.message.contains("`embed_batch_tokens`"),
        "{err}"
    );
}
