//! The serving table of issue 16 in one run, each measure next to its reference and goal:
//! - LLM: the node (gguf-llama) against llama.cpp's own `llama-server` with its prompt cache on
//!   (`cache_prompt: true`, its default) and off, SmolLM2-135M Q4_1, 2 threads, 4 slots,
//!   greedy, streamed `/v1/chat/completions`: decode tokens/s of one stream, aggregate tokens/s
//!   of four, first-token latency of one stream on a conversation sent before (as chat clients
//!   resend it every turn) and of four streams;
//! - embeddings: the node's `/v1/embeddings` (MiniLM int8 on the onnx-ort plugin, 2 threads)
//!   with 16 concurrent kept-alive clients sending one text each, and with one client in
//!   sequence, against a Python `onnxruntime` loop on the same model and threads (one text per
//!   call, 16 per call);
//! - the idle RSS of a node with every plugin installed and no models, against 30 MiB.
//!
//! One server runs at a time. The node is the release build in `<target>/release`
//! (`CYXWIZ_BENCH_NODE_DIR` points elsewhere); a missing binary, plugin, model, llama-server
//! or Python ends the run at once with a line saying what to build. `scripts/bench-serving`
//! builds all of it and runs `cargo bench -p cyxwiz-e2e --bench serving`.

mod support;

use cyxwiz_sdk::serde_json;
use std::{
    fmt::Display,
    io::BufReader,
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::Barrier,
    time::{Duration, Instant, SystemTime},
};
use support::{
    chat::{
        chat_body, llama_server, llama_server_path, spawn_node, stream_chat, user, Server, Streamed,
    },
    http::{exchange, post_request},
    proc_status, target_dir,
};

const THREADS: u32 = 2;
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
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 40;
const SEQUENTIAL: usize = 200;
/// The workspace's plugin crates: "all plugins installed".
const PLUGINS: [&str; 7] = [
    "onnx-tract",
    "onnx-ort",
    "gguf-llama",
    "tflite-tract",
    "tflite-litert",
    "torch-tch",
    "train-candle",
];
const PROMPTS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "List everything you would pack for a month-long hiking trip and why.",
];

/// Ends the run with one line on stderr.
fn fail(message: impl Display) -> ! {
    eprintln!("serving bench: {message}");
    std::process::exit(2)
}

fn require(path: &Path, what: impl Display) {
    if !path.exists() {
        fail(format_args!("{} missing: {what}", path.display()));
    }
}

/// A three-turn conversation, resent whole as a chat client does at each turn.
fn conversation() -> serde_json::Value {
    serde_json::json!([
        {"role": "system", "content": "You are a helpful gardening assistant. Answer briefly and practically."},
        {"role": "user", "content": "I am planning a small vegetable garden on a sunny balcony. Which vegetables grow well in pots?"},
        {"role": "assistant", "content": "Tomatoes, peppers, lettuce, radishes, spinach and herbs such as basil and parsley all grow well in pots. Choose containers at least 30 cm deep for tomatoes and peppers, use good potting soil, and make sure the pots drain well."},
        {"role": "user", "content": "How often should I water the tomatoes in summer, and should I add fertiliser?"},
    ])
}

/// A goal on the ratio node / reference.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    Info,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::AtLeast(x) => format!("≥ {x:.2}x"),
            Goal::AtMost(x) => format!("≤ {x:.2}x"),
            Goal::Info => "-".into(),
        }
    }

    /// "met" when every ratio meets the goal.
    fn verdict(self, ratios: &[f64]) -> &'static str {
        let ok = |r: f64| match self {
            Goal::AtLeast(x) => r >= x,
            Goal::AtMost(x) => r <= x,
            Goal::Info => true,
        };
        match self {
            Goal::Info => "-",
            _ if ratios.iter().all(|&r| ok(r)) => "met",
            _ => "**not met**",
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn lib_name(plugin: &str) -> String {
    format!("libcyxwiz_plugin_{}.so", plugin.replace('-', "_"))
}

/// What the run needs, checked before anything starts.
struct Setup {
    node: PathBuf,
    llama_server: PathBuf,
    python: PathBuf,
    models: PathBuf,
    gguf: PathBuf,
    ort: PathBuf,
}

fn setup() -> Setup {
    let dir = std::env::var_os("CYXWIZ_BENCH_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir()
                .parent()
                .expect("the target directory")
                .join("release")
        });
    let node = dir.join("cyxwiz-node");
    let missing: Vec<&str> = PLUGINS
        .iter()
        .copied()
        .filter(|p| !dir.join(lib_name(p)).exists())
        .collect();
    if !node.exists() || !missing.is_empty() {
        let crates: Vec<String> = PLUGINS
            .iter()
            .map(|p| format!("-p cyxwiz-plugin-{p}"))
            .collect();
        let what = if node.exists() {
            format!("plugins {}", missing.join(", "))
        } else {
            "cyxwiz-node".into()
        };
        fail(format_args!(
            "{what} missing in {}: build with `cargo build --release -p cyxwiz-node {}` \
             (LIBTORCH set as scripts/test does), or run scripts/bench-serving",
            dir.display(),
            crates.join(" ")
        ));
    }
    let llama_server = llama_server_path();
    require(
        &llama_server,
        "run scripts/build-llama-server first (about 10 min, once)",
    );
    let python = std::env::var_os("CYXWIZ_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CYXWIZ_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/cyxwiz-venv")
                })
                .join("bin/python")
        });
    require(&python, "run scripts/python-env first");
    let models = cyxwiz_e2e::models_dir();
    let gguf = models.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let ort = models.join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    let fetch = "run scripts/fetch-models.py --set gguf --set onnx --set runtimes first";
    for path in [&gguf, &ort, &models.join("minilm/model.onnx")] {
        require(path, fetch);
    }
    Setup {
        node,
        llama_server,
        python,
        models,
        gguf,
        ort,
    }
}

/// The profile a binary in `<target>/<dir>/` was built with, and how long ago.
fn build_of(bin: &Path) -> String {
    let dir = bin
        .parent()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let profile = if dir == "debug" { "dev".into() } else { dir };
    let age = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| format!(", built {} min ago", d.as_secs() / 60))
        .unwrap_or_default();
    format!("`{profile}` profile{age}")
}

fn python_versions(python: &Path) -> String {
    let out = Command::new(python)
        .args([
            "-c",
            "import onnxruntime, tokenizers, numpy; print(onnxruntime.__version__)",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => fail(format_args!(
            "{} lacks onnxruntime, tokenizers or numpy: run scripts/python-env",
            python.display()
        )),
    }
}

// ---------------------------------------------------------------- idle footprint

/// `plugins list --json` of the node with `config`: "N libraries: M loaded (names) ...".
fn plugin_summary(s: &Setup, config: &Path, data: &Path) -> String {
    let out = Command::new(&s.node)
        .args(["plugins", "list", "--json", "--config"])
        .arg(config)
        .env("CYXWIZ_DATA_DIR", data)
        .env("CYXWIZ_LOG_LEVEL", "error")
        .output();
    let rows = out
        .ok()
        .and_then(|o| serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).ok());
    let Some(rows) = rows else {
        return "`plugins list --json` gave no list".into();
    };
    let mut by_status: Vec<(String, Vec<String>)> = Vec::new();
    for row in &rows {
        let status = row["status"].as_str().unwrap_or("?").to_string();
        let name = row["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| row["path"].as_str().unwrap_or("?").to_string());
        match by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, names)) => names.push(name),
            None => by_status.push((status, vec![name])),
        }
    }
    let parts: Vec<String> = by_status
        .iter()
        .map(|(status, names)| format!("{} {status} ({})", names.len(), names.join(", ")))
        .collect();
    format!("{} libraries: {}", rows.len(), parts.join("; "))
}

/// VmRSS (KiB) once it stops moving: within 1% over the last two seconds, or after 15 s.
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut samples: Vec<u64> = Vec::new();
    loop {
        samples.push(proc_status(pid, "VmRSS").unwrap_or(0));
        let last = &samples[samples.len().saturating_sub(8)..];
        let (lo, hi) = (
            *last.iter().min().unwrap_or(&0),
            *last.iter().max().unwrap_or(&0),
        );
        if (last.len() == 8 && hi - lo <= hi / 100) || Instant::now() > deadline {
            return *last.last().unwrap_or(&0);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn idle(s: &Setup, data: &Path) {
    let config = data.join("idle.toml");
    let mut toml = format!(
        "[plugins.preference]\nonnx = [\"onnx-ort\", \"onnx-tract\"]\n\
         [runtimes.onnx-ort]\nlibrary = \"{}\"\n",
        s.ort.display()
    );
    let tflite = s.models.join("runtimes/tflite/libtensorflowlite_c.so");
    if tflite.exists() {
        toml += &format!(
            "[runtimes.tflite-litert]\nlibrary = \"{}\"\n",
            tflite.display()
        );
    }
    std::fs::write(&config, toml).expect("config");
    let summary = plugin_summary(s, &config, &data.join("idle"));
    let node = spawn_node(&s.node, &config, &data.join("idle"), "node".into());
    let rss = settled_rss(node.child.id());
    let hwm = proc_status(node.child.id(), "VmHWM").unwrap_or(0);
    let threads = proc_status(node.child.id(), "Threads").unwrap_or(0);
    drop(node);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let goal = Goal::AtMost(1.0);
    let ratio = mib(rss) / 30.0;
    println!("\n## Idle footprint: node with every plugin installed, no models");
    println!("Plugins as `plugins list` sees them with this config: {summary}.\n");
    println!("| measure | node | goal | node / goal | met |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| RSS once settled (VmRSS), MiB | {:.1} | ≤ 30 MiB | {ratio:.2}x | {} |",
        mib(rss),
        goal.verdict(&[ratio])
    );
    println!(
        "| peak RSS while starting (VmHWM), MiB | {:.1} | | | |",
        mib(hwm)
    );
    println!("| threads | {threads} | | | |");
}

// ---------------------------------------------------------------- LLM

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

fn llm(server: &Server, cache_prompt: Option<bool>) -> Llm {
    let addr = server.addr.as_str();
    let now = Instant::now;
    // One stream: tokens/s after the first token, the same prompt each run.
    let body = chat_body(&user(PROMPTS[0]), DECODE_TOKENS, cache_prompt);
    stream_chat(addr, &body, now()); // warm-up
    let decode = median(
        (0..RUNS)
            .map(|_| stream_chat(addr, &body, now()).decode_rate())
            .collect(),
    );
    // First token of a conversation sent before.
    let body = chat_body(&conversation(), FIRST_TOKENS, cache_prompt);
    stream_chat(addr, &body, now()); // the turn the client sent before
    let mut repeats: Vec<Streamed> = (0..REPEATS)
        .map(|_| stream_chat(addr, &body, now()))
        .collect();
    let first_repeat = median(repeats.iter().map(|r| ms(r.first)).collect());
    let repeat = repeats.pop().expect("repeats");
    // Four streams at once, each on its own prompt (seen in the warm-up round).
    let bodies: Vec<String> = PROMPTS
        .iter()
        .map(|p| chat_body(&user(p), STREAM_TOKENS, cache_prompt))
        .collect();
    let round = || {
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
    round(); // warm-up
    let mut rates = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..RUNS {
        let (rate, results) = round();
        rates.push(rate);
        firsts.extend(results.iter().map(|r| ms(r.first)));
    }
    Llm {
        decode,
        aggregate: median(rates),
        first_repeat,
        first_four: median(firsts),
        repeat,
    }
}

fn llm_section(s: &Setup, data: &Path) {
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
        llm(&server, None)
    };
    let cached = {
        let server = llama_server(&s.llama_server, &s.gguf, THREADS, SLOTS);
        llm(&server, Some(true))
    };
    let uncached = {
        let server = llama_server(&s.llama_server, &s.gguf, THREADS, SLOTS);
        llm(&server, Some(false))
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

// ---------------------------------------------------------------- embeddings

fn sentence(i: usize) -> String {
    // The sentences of scripts/bench_embeddings.py, in the same order.
    format!(
        "Sentence number {} about distributed machine learning nodes.",
        i % 64
    )
}

fn embed_request(i: usize) -> Vec<u8> {
    let body = serde_json::json!({"model": "embed", "input": sentence(i)}).to_string();
    post_request("/v1/embeddings", &body, false)
}

/// One embedding on a kept-alive connection; checks the answer is one.
fn embed(conn: &mut BufReader<TcpStream>, i: usize) {
    let (status, body) = exchange(conn, &embed_request(i));
    assert!(
        status == 200 && body.starts_with(b"{") && body.windows(9).any(|w| w == b"embedding"),
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
}

fn connect(addr: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    BufReader::new(stream)
}

/// Embeddings/s with CLIENTS kept-alive connections, each sending PER_CLIENT one-text requests.
fn concurrent_rate(addr: &str) -> f64 {
    let barrier = Barrier::new(CLIENTS + 1);
    let elapsed = std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let barrier = &barrier;
            s.spawn(move || {
                let mut conn = connect(addr);
                embed(&mut conn, c); // warm-up: the connection is open and used
                barrier.wait();
                for j in 0..PER_CLIENT {
                    embed(&mut conn, c * PER_CLIENT + j);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed();
    (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64()
}

/// Embeddings/s with one kept-alive connection sending SEQUENTIAL one-text requests in turn.
fn sequential_rate(addr: &str) -> f64 {
    let mut conn = connect(addr);
    for i in 0..16 {
        embed(&mut conn, i);
    }
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        embed(&mut conn, i);
    }
    SEQUENTIAL as f64 / started.elapsed().as_secs_f64()
}

fn embeddings_section(s: &Setup, data: &Path, ort_version: &str) {
    let config = data.join("embed.toml");
    std::fs::write(
        &config,
        format!(
            "[runtimes.onnx-ort]\nlibrary = \"{}\"\n[[deployments]]\nname = \"embed\"\n\
             path = \"{}\"\nplugin = \"onnx-ort\"\nthreads = {THREADS}\n",
            s.ort.display(),
            s.models.join("minilm").display()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let (concurrent, sequential) = {
        let node = spawn_node(&s.node, &config, &data.join("embed"), "node".into());
        // The answer's shape, checked once in full.
        let (status, body) = exchange(&mut connect(&node.addr), &embed_request(0));
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            (
                status,
                answer["data"][0]["embedding"].as_array().map(Vec::len)
            ),
            (200, Some(384)),
            "{answer}"
        );
        (concurrent_rate(&node.addr), sequential_rate(&node.addr))
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_embeddings.py");
    let out = Command::new(&s.python)
        .arg(script)
        .arg(&s.models)
        .arg((CLIENTS * PER_CLIENT).to_string())
        .output()
        .expect("python runs");
    if !out.status.success() {
        fail(format_args!(
            "scripts/bench_embeddings.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rate = |key: &str| {
        reference[key]
            .as_f64()
            .expect("a rate from the Python loop")
    };
    let one = rate("Python onnxruntime, 1 per call");
    let sixteen = rate("Python onnxruntime, 16 per call");
    println!(
        "\n## Embeddings: all-MiniLM-L6-v2 int8 (ONNX Runtime {ort_version}), {THREADS} threads ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "Node: `/v1/embeddings` on the onnx-ort plugin, one text per request, kept-alive connections \
         ({CLIENTS} clients x {PER_CLIENT} requests; 1 client x {SEQUENTIAL}). Python: \
         scripts/bench_embeddings.py, {} texts through onnxruntime + tokenizers + NumPy pooling.\n",
        CLIENTS * PER_CLIENT
    );
    println!("| measure | node, embeddings/s | reference | reference, embeddings/s | node / reference | goal | met |");
    println!("|---|---:|---|---:|---:|---|---|");
    let rows = [
        (
            format!("{CLIENTS} concurrent clients, 1 text each"),
            concurrent,
            "Python onnxruntime, 1 text per call",
            one,
            Goal::AtLeast(1.5),
        ),
        (
            format!("{CLIENTS} concurrent clients, 1 text each"),
            concurrent,
            "Python onnxruntime, 16 texts per call",
            sixteen,
            Goal::AtLeast(1.0),
        ),
        (
            "1 client, requests in sequence".into(),
            sequential,
            "Python onnxruntime, 1 text per call",
            one,
            Goal::AtLeast(0.85),
        ),
    ];
    for (name, node, reference, base, goal) in rows {
        let ratio = node / base;
        println!(
            "| {name} | {node:.0} | {reference} | {base:.0} | {ratio:.2}x | {} | {} |",
            goal.text(),
            goal.verdict(&[ratio])
        );
    }
}

fn main() {
    let started = Instant::now();
    let load = loadavg();
    let s = setup();
    let ort_version = python_versions(&s.python);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# Serving benchmark (issue 16)\n");
    println!("- node: {} ({})", s.node.display(), build_of(&s.node));
    println!("- llama-server: {}", s.llama_server.display());
    println!(
        "- Python: {} (onnxruntime {ort_version})",
        s.python.display()
    );
    println!("- machine: {cores} cores, load average at start {load} (1/5/15 min)");
    let data = tempfile::tempdir().expect("tempdir");
    idle(&s, data.path());
    llm_section(&s, data.path());
    embeddings_section(&s, data.path(), &ort_version);
    println!(
        "\nTook {:.0} s; load average at the end {}.",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
}
