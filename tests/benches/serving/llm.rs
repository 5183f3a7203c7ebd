//! The LLM section: the node against llama-server with its prompt cache on and off, one server
//! at a time, each put through the same requests (one stream, a conversation resent, four
//! streams).

use crate::support::chat::{
    chat_body, llama_server, spawn_node, stream_chat, user, Server, Streamed,
};
use crate::{median, ms, Goal, Setup, THREADS};
use cyxwiz_sdk::serde_json;
use std::{path::Path, time::Instant};

const SLOTS: usize = 4;
/// Tokens per stream for the one-stream decode rate and for the four streams.
const DECODE_TOKENS: u32 = 128;
const STREAM_TOKENS: u32 = 96;
/// Tokens per request when only the first one is timed.
const FIRST_TOKENS: u32 = 8;
/// Measured runs of the one-stream decode and of the four streams (median reported), and
/// repeats of the conversation for its first token.
const RUNS: usize = 3;
const REPEATS: usize = 7;
const PROMPTS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "List everything you would pack for a month-long hiking trip and why.",
];

/// A three-turn conversation, resent whole as a chat client does at each turn.
fn conversation() -> serde_json::Value {
    serde_json::json!([
        {"role": "system", "content": "You are a helpful gardening assistant. Answer briefly and practically."},
        {"role": "user", "content": "I am planning a small vegetable garden on a sunny balcony. Which vegetables grow well in pots?"},
        {"role": "assistant", "content": "Tomatoes, peppers, lettuce, radishes, spinach and herbs such as basil and parsley all grow well in pots. Choose containers at least 30 cm deep for tomatoes and peppers, use good potting soil, and make sure the pots drain well."},
        {"role": "user", "content": "How often should I water the tomatoes in summer, and should I add fertiliser?"},
    ])
}

/// One server's LLM measures.
struct Llm {
    decode: f64,
    aggregate: f64,
    first_repeat: f64,
    first_four: f64,
    /// The last repeat of the conversation: its prompt and cached tokens.
    repeat: Streamed,
}

/// Reads one measure of an `Llm`.
type Measure = fn(&Llm) -> f64;

fn llm(server: &Server, label: &str, cache_prompt: Option<bool>) -> Llm {
    let addr = server.addr.as_str();
    let now = Instant::now;
    let began = now();
    let progress =
        |phase: &str| eprintln!("[{label}, {:.0} s] {phase}", began.elapsed().as_secs_f64());
    progress("1 stream");
    // One stream: tokens/s after the first token, the same prompt each run.
    let body = chat_body(&user(PROMPTS[0]), DECODE_TOKENS, cache_prompt);
    let warm_up = chat_body(&user(PROMPTS[0]), FIRST_TOKENS, cache_prompt);
    stream_chat(addr, &warm_up, now());
    let decode = median(
        (0..RUNS)
            .map(|_| stream_chat(addr, &body, now()).decode_rate())
            .collect(),
    );
    progress("conversation resent");
    // First token of a conversation sent before.
    let body = chat_body(&conversation(), FIRST_TOKENS, cache_prompt);
    stream_chat(addr, &body, now()); // the turn the client sent before
    let mut repeats: Vec<Streamed> = (0..REPEATS)
        .map(|_| stream_chat(addr, &body, now()))
        .collect();
    let first_repeat = median(repeats.iter().map(|r| ms(r.first)).collect());
    let repeat = repeats.pop().expect("repeats");
    // Four streams at once, each on its own prompt (seen in the warm-up round).
    let bodies = |tokens| -> Vec<String> {
        PROMPTS
            .iter()
            .map(|p| chat_body(&user(p), tokens, cache_prompt))
            .collect()
    };
    let round = |bodies: &[String]| {
        let started = Instant::now();
        let results: Vec<Streamed> = std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|b| s.spawn(move || stream_chat(addr, b, Instant::now())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stream"))
                .collect()
        });
        let tokens: u64 = results.iter().map(|r| r.completion_tokens).sum();
        (tokens as f64 / started.elapsed().as_secs_f64(), results)
    };
    progress("4 streams");
    round(&bodies(FIRST_TOKENS)); // warm-up: each prompt seen once
    let bodies = bodies(STREAM_TOKENS);
    let mut rates = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..RUNS {
        let (rate, results) = round(&bodies);
        rates.push(rate);
        firsts.extend(results.iter().map(|r| ms(r.first)));
    }
    progress("done");
    Llm {
        decode,
        aggregate: median(rates),
        first_repeat,
        first_four: median(firsts),
        repeat,
    }
}

pub fn section(s: &Setup, data: &Path) {
    let config = data.join("chat.toml");
    std::fs::write(
        &config,
        format!(
            "[[deployments]]\nname = \"chat\"\npath = \"{}\"\nthreads = {THREADS}\n\
             options = {{ slots = {SLOTS}, context_length = 2048 }}\n",
            s.gguf.display()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let node = {
        let server = spawn_node(&s.node, &config, &data.join("chat"), "node".into());
        llm(&server, "node", None)
    };
    let cached = {
        let server = llama_server(&s.llama_server, &s.gguf, THREADS, SLOTS);
        llm(&server, "llama-server, cache on", Some(true))
    };
    let uncached = {
        let server = llama_server(&s.llama_server, &s.gguf, THREADS, SLOTS);
        llm(&server, "llama-server, cache off", Some(false))
    };
    println!(
        "\n## LLM: SmolLM2-135M-Instruct Q4_1, {THREADS} threads, {SLOTS} slots, greedy, streamed /v1/chat/completions ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "Node vs llama.cpp's llama-server with its prompt cache on (`cache_prompt: true`, its default) \
         and off. Goals are checked against both llama-server runs.\n"
    );
    println!("| measure | node | llama-server, cache on | node / it | llama-server, cache off | node / it | goal | met |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let rows: [(String, Measure, Goal, usize); 4] = [
        (
            format!("decode, 1 stream, tokens/s after the first ({DECODE_TOKENS} tokens, median of {RUNS})"),
            |l| l.decode,
            Goal::AtLeast(1.0),
            1,
        ),
        (
            format!("aggregate, 4 streams, tokens/s ({STREAM_TOKENS} tokens each, median of {RUNS})"),
            |l| l.aggregate,
            Goal::AtLeast(1.0),
            1,
        ),
        (
            format!("first token, 1 stream, conversation sent before, ms (median of {REPEATS})"),
            |l| l.first_repeat,
            Goal::AtMost(1.1),
            0,
        ),
        (
            format!("first token, 4 streams, prompts sent before, ms (median of {})", 4 * RUNS),
            |l| l.first_four,
            Goal::Info,
            0,
        ),
    ];
    for (name, get, goal, decimals) in rows {
        let (n, c, u) = (get(&node), get(&cached), get(&uncached));
        let (rc, ru) = (n / c, n / u);
        println!(
            "| {name} | {n:.decimals$} | {c:.decimals$} | {rc:.2}x | {u:.decimals$} | {ru:.2}x | {} | {} |",
            goal.text(),
            goal.verdict(&[rc, ru])
        );
    }
    let tokens = |l: &Llm| {
        let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        format!(
            "{} / {}",
            opt(l.repeat.prompt_tokens),
            opt(l.repeat.cached_tokens)
        )
    };
    println!(
        "| prompt / cached tokens of the repeated conversation (`usage.prompt_tokens_details.cached_tokens`; llama-server: `timings.cache_n`) | {} | {} | | {} | | | |",
        tokens(&node),
        tokens(&cached),
        tokens(&uncached)
    );
}
