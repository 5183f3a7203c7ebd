//! Prompt-prefix reuse on SmolLM2: a request whose prompt starts with tokens a sequence still
//! holds decodes only the rest, reports how many it reused (`cached_tokens`), and produces
//! exactly the greedy text the same model gives with the cache off: for a repeated prompt, a
//! conversation that grows turn by turn, requests spread over both slots, after evictions, and
//! for concurrent requests sharing a prefix.
#![allow(clippy::unwrap_used)]

mod common;

use common::{load_with, run};
use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{serde_json::json, ChatMessage, GenerateOutput, GenerateRequest, SamplingParams};

fn chat(turns: &[(&str, &str)], max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: turns
            .iter()
            .map(|(role, content)| ChatMessage {
                role: (*role).to_string(),
                content: (*content).to_string(),
            })
            .collect(),
        params: SamplingParams {
            max_tokens,
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }
}

struct Pair {
    cached: LoadedModel,
    fresh: LoadedModel,
}

impl Pair {
    fn load(slots: u32) -> Self {
        let options = |cache: bool| json!({"slots": slots, "context_length": 512, "threads_batch": 2, "prompt_cache": cache});
        Self {
            cached: load_with(options(true)),
            fresh: load_with(options(false)),
        }
    }

    /// Runs `request` on both models; the texts must be equal. Returns the cached model's
    /// text and outcome.
    fn check(&self, what: &str, request: &GenerateRequest) -> (String, GenerateOutput) {
        let (text, out) = run(&self.cached, request);
        let (expected, reference) = run(&self.fresh, request);
        assert_eq!(
            text, expected,
            "{what}: prefix reuse changed the greedy text"
        );
        assert_eq!(out.prompt_tokens, reference.prompt_tokens, "{what}");
        assert_eq!(out.completion_tokens, reference.completion_tokens, "{what}");
        assert_eq!(reference.cached_tokens, 0, "{what}: the cache is off");
        assert!(out.cached_tokens < out.prompt_tokens, "{what}: {out:?}");
        (text, out)
    }
}

const SYSTEM: &str = "You are a helpful assistant who answers in one short paragraph.";

#[test]
fn reuse_keeps_greedy_text_and_reports_cached_tokens() {
    let pair = Pair::load(2);
    let first = chat(&[("system", SYSTEM), ("user", "What is a rainbow?")], 24);

    let (_, out) = pair.check("first request", &first);
    assert_eq!(out.cached_tokens, 0, "nothing cached yet");

    // The same prompt again: everything but its last token is reused.
    let (answer, out) = pair.check("repeated prompt", &first);
    assert_eq!(out.cached_tokens, out.prompt_tokens - 1, "{out:?}");

    // The conversation grows: the earlier turn is reused, only the new part is decoded.
    let second = chat(
        &[
            ("system", SYSTEM),
            ("user", "What is a rainbow?"),
            ("assistant", &answer),
            ("user", "And why is the sky blue?"),
        ],
        24,
    );
    let (_, grown) = pair.check("second turn", &second);
    assert!(
        grown.cached_tokens >= out.prompt_tokens - 1 && grown.cached_tokens < grown.prompt_tokens,
        "the first turn's {} tokens should be reused: {grown:?}",
        out.prompt_tokens
    );

    // Other conversations take the other slot, then evict: each result still matches.
    let other = chat(&[("user", "Name three rivers in Europe.")], 16);
    let third = chat(&[("user", "Write a haiku about snow.")], 16);
    pair.check("another conversation", &other);
    pair.check("a third one, evicting the least recently used", &third);
    pair.check("the third again", &third);
    pair.check("the second turn after evictions", &second);
    pair.check("the first prompt after evictions", &first);
    // A prompt of 256 tokens or more keeps its last two tokens to decode, and matches too.
    let manual = "Check the oil level, the tyre pressure and the brake fluid before a long \
                  drive, and look at the lights and the wipers as well. "
        .repeat(12);
    let long = chat(
        &[("system", &manual), ("user", "What should I check first?")],
        16,
    );
    let (_, fresh) = pair.check("a long prompt", &long);
    assert!(fresh.prompt_tokens >= 256, "{fresh:?}");
    let (_, again) = pair.check("the long prompt again", &long);
    assert_eq!(again.cached_tokens, again.prompt_tokens - 2, "{again:?}");
    // A prompt sharing only the system message with what the slots hold: that part is reused.
    let (_, prefix) = pair.check("a shorter prompt", &chat(&[("system", SYSTEM)], 12));
    assert!(prefix.cached_tokens > 10, "{prefix:?}");
}

#[test]
fn concurrent_requests_sharing_a_prefix_match_the_uncached_text() {
    let pair = Pair::load(4);
    let questions = [
        "What is a rainbow?",
        "What is a comet?",
        "What is a glacier?",
        "What is a volcano?",
        "What is a desert?",
        "What is a rainbow?",
    ];
    let requests: Vec<GenerateRequest> = questions
        .iter()
        .map(|q| chat(&[("system", SYSTEM), ("user", q)], 20))
        .collect();
    let expected: Vec<String> = requests.iter().map(|r| run(&pair.fresh, r).0).collect();
    // Two rounds: the second finds every sequence holding a prompt with the same system part.
    for round in 0..2 {
        let got: Vec<(String, GenerateOutput)> = std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|r| s.spawn(|| run(&pair.cached, r)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, ((text, out), want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(text, want, "round {round}, request {i}: {out:?}");
        }
        if round == 1 {
            let reused: u32 = got.iter().map(|(_, o)| o.cached_tokens).sum();
            assert!(reused > 0, "the second round reused nothing: {got:?}");
        }
    }
}
