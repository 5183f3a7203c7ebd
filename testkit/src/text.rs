//! Text checks on a loaded sample: generation (sane counts, cancellation, an empty prompt
//! refused, concurrent streams each getting their own text) and embeddings.

use crate::checks::{concurrently, expect_kind, Outcome, Runner};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{ErrorKind, FinishReason, GenerateRequest, SamplingParams};
use std::sync::Arc;

/// Distinct prompts for the concurrent-streams check; greedy continuations of these differ.
const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "Once upon a time, in a land far away,",
    "The recipe for a good pancake starts with",
    "In the year 2050, cities will",
    "The most important rule of programming is",
    "Water boils at a temperature of",
    "My favourite colour is",
    "The first person to walk on the moon was",
];

/// A greedy (temperature 0) completion request: the same text on every run.
pub fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        params: SamplingParams {
            max_tokens,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }
}

/// Records the generation checks.
pub(crate) fn generate_checks(
    model: &Arc<LoadedModel>,
    threads: usize,
    label: &str,
    run: &mut Runner<'_>,
) {
    let m = model.clone();
    run.check(format!("{label}: generate"), move || generate(&m));
    let m = model.clone();
    run.check(format!("{label}: generate cancels"), move || {
        generate_cancel(&m)
    });
    let m = model.clone();
    run.check(format!("{label}: generate without prompt"), move || {
        expect_kind(
            "empty prompt",
            m.generate(&GenerateRequest::default(), &mut |_: &str| true),
            ErrorKind::INVALID_INPUT,
        )
    });
    let m = model.clone();
    run.check(
        format!("{label}: {threads} concurrent streams each get their own text"),
        move || streams_stay_apart(&m, threads),
    );
}

/// Records the embedding checks.
pub(crate) fn embed_checks(
    model: &Arc<LoadedModel>,
    threads: usize,
    label: &str,
    run: &mut Runner<'_>,
) {
    let m = model.clone();
    run.check(format!("{label}: embed"), move || embed(&m));
    let m = model.clone();
    run.check(format!("{label}: embed empty batch"), move || {
        expect_kind("empty batch", m.embed(&[]), ErrorKind::INVALID_INPUT)
    });
    let m = model.clone();
    run.check(format!("{label}: {threads} threads embed"), move || {
        concurrently(threads, || embed(&m))
    });
}

fn generate(model: &LoadedModel) -> Outcome {
    let mut pieces = 0usize;
    let out = model
        .generate(&greedy(PROMPTS[0], 8), &mut |_: &str| {
            pieces += 1;
            true
        })
        .map_err(|e| e.to_string())?;
    if out.completion_tokens == 0 || out.completion_tokens > 8 {
        return Err(format!(
            "completion_tokens {} outside 1..=8",
            out.completion_tokens
        ));
    }
    if pieces == 0 && out.finish_reason == FinishReason::LENGTH {
        return Err("no text reached the sink".into());
    }
    if out.finish_reason != FinishReason::STOP && out.finish_reason != FinishReason::LENGTH {
        return Err(format!("finish reason {:?}", out.finish_reason));
    }
    if out.prompt_tokens == 0 {
        return Err("prompt_tokens is 0".into());
    }
    Ok(())
}

fn generate_cancel(model: &LoadedModel) -> Outcome {
    let out = model
        .generate(
            &greedy("Count from one to one hundred:", 64),
            &mut |_: &str| false,
        )
        .map_err(|e| e.to_string())?;
    if out.finish_reason != FinishReason::CANCELLED && out.finish_reason != FinishReason::STOP {
        return Err(format!(
            "sink returned false, finish reason {:?} after {} tokens",
            out.finish_reason, out.completion_tokens
        ));
    }
    if out.completion_tokens > 2 {
        return Err(format!(
            "sink returned false at once but {} tokens were generated",
            out.completion_tokens
        ));
    }
    Ok(())
}

/// The text greedy decoding streams for `prompt`.
fn text_of(model: &LoadedModel, prompt: &str) -> Result<String, String> {
    let mut text = String::new();
    model
        .generate(&greedy(prompt, 8), &mut |piece: &str| {
            text.push_str(piece);
            true
        })
        .map_err(|e| format!("{prompt:?}: {e}"))?;
    Ok(text)
}

/// `threads` streams with different prompts at once, twice: each must receive exactly the
/// text its prompt gives alone (greedy decoding is deterministic), so no request's tokens
/// reach another's sink.
fn streams_stay_apart(model: &LoadedModel, threads: usize) -> Outcome {
    let prompts: Vec<&str> = (0..threads.max(2))
        .map(|i| PROMPTS[i % PROMPTS.len()])
        .collect();
    let alone = prompts
        .iter()
        .map(|p| text_of(model, p))
        .collect::<Result<Vec<_>, _>>()?;
    for _round in 0..2 {
        let together: Vec<Result<String, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = prompts
                .iter()
                .map(|p| scope.spawn(move || text_of(model, p)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a calling thread panicked".into()))
                })
                .collect()
        });
        for (i, got) in together.into_iter().enumerate() {
            let got = got?;
            if got != alone[i] {
                return Err(format!(
                    "streams are mixed up: {:?} streamed {got:?} with {} streams running, \
                     but {:?} alone",
                    prompts[i],
                    prompts.len(),
                    alone[i]
                ));
            }
        }
    }
    Ok(())
}

fn embed(model: &LoadedModel) -> Outcome {
    let out = model
        .embed(&["hello world", "a completely different sentence"])
        .map_err(|e| e.to_string())?;
    if out.dim == 0 || out.data.len() != 2 * out.dim {
        return Err(format!(
            "dim {} with {} values for 2 texts",
            out.dim,
            out.data.len()
        ));
    }
    if out.data.iter().any(|v| !v.is_finite()) {
        return Err("non-finite values".into());
    }
    let rows: Vec<&[f32]> = out.rows().collect();
    if rows[0] == rows[1] {
        return Err("two different texts gave the same vector".into());
    }
    Ok(())
}
