//! Load options, parsed and range-checked before any of them reaches llama.cpp: a number that
//! llama.cpp would take at face value (2^31 threads, a context no machine can hold) is refused
//! here with the key and its bound. The bounds that depend on the model (its trained context)
//! are checked by `Options::resolve` once the weights are loaded, still before a context exists.

use cyxwiz_sdk::{serde_json::Value, Error, LoadOptions, Result};
use std::ops::RangeInclusive;

/// Most parallel sequences per model (llama.cpp allows 256; more than 64 only costs memory).
const MAX_SLOTS: u32 = 64;
/// Most requests waiting for a slot (the queue's buffer is allocated up front).
const MAX_QUEUE: u32 = 100_000;
/// Fewest tokens per sequence or embedding batch.
const MIN_TOKENS: u32 = 16;

/// Load options after the model-independent checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Parallel sequences.
    pub slots: u32,
    /// Requests that may wait for a slot.
    pub queue: u32,
    /// Decode threads (the most when `adaptive`).
    pub threads: i32,
    /// Threads for batches of more than one token (the most when `adaptive`).
    pub threads_batch: i32,
    /// Thread counts follow the machine's load (neither `threads` nor `threads_batch` given).
    pub adaptive: bool,
    /// `context_length` if given.
    context_length: Option<u32>,
    /// `embed_batch_tokens` if given.
    embed_batch_tokens: Option<u32>,
    /// Reuse cached prompt prefixes across requests (`prompt_cache`, default true).
    pub prompt_cache: bool,
}

/// The options that depend on the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolved {
    /// Tokens per sequence.
    pub context_length: u32,
    /// Token budget of one embedding batch, and so the longest text `embed` takes.
    pub embed_batch_tokens: u32,
}

fn option_u32(options: &Value, key: &str, range: RangeInclusive<u32>) -> Result<Option<u32>> {
    let Some(v) = options.get(key) else {
        return Ok(None);
    };
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "load option `{key}` must be an integer in {}..={}, got {v}",
                range.start(),
                range.end()
            ))
        })
}

/// The logical CPUs this process may use.
pub fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

impl Options {
    /// Checks everything that does not need the model. Thread counts are bounded by `cores`,
    /// the CPUs available to this process: ggml's workers wait for each other actively, so a
    /// thread without a core of its own only slows every step down, and a huge count made
    /// llama.cpp corrupt its heap (`threads` 2147483647: "double free or corruption").
    pub fn parse(load: &LoadOptions, cores: u32) -> Result<Self> {
        let opts = &load.options;
        if !(opts.is_object() || opts.is_null()) {
            return Err(Error::invalid_input(format!(
                "load options must be a JSON object, got {opts}"
            )));
        }
        let cores = cores.max(1);
        if load.threads > cores {
            return Err(Error::invalid_input(format!(
                "`threads` must be at most {cores} (the CPUs available to this process), got {}",
                load.threads
            )));
        }
        let slots = option_u32(opts, "slots", 1..=MAX_SLOTS)?.unwrap_or(4);
        let queue = option_u32(opts, "queue", 0..=MAX_QUEUE)?.unwrap_or(64);
        let threads_batch = option_u32(opts, "threads_batch", 1..=cores)?;
        // The upper bounds of these two depend on the model; `resolve` checks them.
        let context_length = option_u32(opts, "context_length", MIN_TOKENS..=u32::MAX)?;
        let embed_batch_tokens = option_u32(opts, "embed_batch_tokens", MIN_TOKENS..=u32::MAX)?;
        let prompt_cache = match opts.get("prompt_cache") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(Error::invalid_input(format!(
                    "load option `prompt_cache` must be true or false, got {v}"
                )))
            }
        };
        let adaptive = load.threads == 0 && threads_batch.is_none();
        let threads = if load.threads == 0 {
            cores
        } else {
            load.threads
        };
        Ok(Self {
            slots,
            queue,
            // Both at most `cores`, which fits an i32 on any machine that exists; saturate
            // rather than wrap on one that does not.
            threads: i32::try_from(threads).unwrap_or(i32::MAX),
            threads_batch: i32::try_from(threads_batch.unwrap_or(cores)).unwrap_or(i32::MAX),
            adaptive,
            context_length,
            embed_batch_tokens,
            prompt_cache,
        })
    }

    /// Checks the options bounded by the model's trained context: `context_length` (default
    /// min(2048, trained)) and `embed_batch_tokens` (default `context_length`), both at most
    /// the trained context.
    pub fn resolve(&self, trained: u32) -> Result<Resolved> {
        let trained = trained.max(MIN_TOKENS);
        let in_range = |key: &str, value: Option<u32>, default: u32| match value {
            None => Ok(default),
            Some(n) if n <= trained => Ok(n),
            Some(n) => Err(Error::invalid_input(format!(
                "load option `{key}` must be an integer in {MIN_TOKENS}..={trained} (the \
                 model's trained context), got {n}"
            ))),
        };
        let context_length = in_range("context_length", self.context_length, trained.min(2048))?;
        let embed_batch_tokens = in_range(
            "embed_batch_tokens",
            self.embed_batch_tokens,
            context_length,
        )?;
        Ok(Resolved {
            context_length,
            embed_batch_tokens,
        })
    }
}

/// Refuses a KV cache larger than the machine's memory before llama.cpp allocates (and, with
/// overcommit, touches) it. `MemTotal` from /proc/meminfo; no check where it is unreadable.
pub fn check_kv_cache(bytes: u64, slots: u32, context: u32) -> Result<()> {
    let Some(total) = mem_total() else {
        return Ok(());
    };
    if bytes > total {
        return Err(Error::invalid_input(format!(
            "load options `slots` {slots} x `context_length` {context} need a {:.1} GiB KV \
             cache, more than this machine's {:.1} GiB of memory",
            bytes as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::{serde_json::json, ErrorKind};

    fn load(threads: u32, options: Value) -> LoadOptions {
        LoadOptions {
            threads,
            options,
            ..LoadOptions::default()
        }
    }

    fn refused(result: Result<Options>) -> String {
        let err = result.expect_err("should be refused");
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
        err.message
    }

    #[test]
    fn huge_thread_counts_are_refused_with_the_bound() {
        let msg = refused(Options::parse(&load(2_147_483_647, json!({})), 2));
        assert!(
            msg.contains("`threads`") && msg.contains("at most 2"),
            "{msg}"
        );
        assert!(msg.contains("2147483647"), "{msg}");
        let msg = refused(Options::parse(&load(3, json!({})), 2));
        assert!(msg.contains("at most 2"), "{msg}");
        let msg = refused(Options::parse(
            &load(0, json!({"threads_batch": 2_147_483_647u64})),
            8,
        ));
        assert!(
            msg.contains("`threads_batch`") && msg.contains("1..=8"),
            "{msg}"
        );
        let msg = refused(Options::parse(&load(0, json!({"threads_batch": 0})), 8));
        assert!(msg.contains("`threads_batch`"), "{msg}");
        // At the bound is fine.
        let ok = Options::parse(&load(2, json!({"threads_batch": 2})), 2).unwrap();
        assert_eq!((ok.threads, ok.threads_batch, ok.adaptive), (2, 2, false));
    }

    #[test]
    fn every_numeric_option_has_a_range_and_a_type() {
        for (options, key) in [
            (json!({"slots": 0}), "`slots`"),
            (json!({"slots": 65}), "`slots`"),
            (json!({"slots": -1}), "`slots`"),
            (json!({"slots": "4"}), "`slots`"),
            (json!({"slots": 4.5}), "`slots`"),
            (json!({"queue": 100_001}), "`queue`"),
            (json!({"queue": 1u64 << 40}), "`queue`"),
            (json!({"context_length": 8}), "`context_length`"),
            (json!({"context_length": 1u64 << 33}), "`context_length`"),
            (json!({"embed_batch_tokens": 0}), "`embed_batch_tokens`"),
            (json!({"prompt_cache": "yes"}), "`prompt_cache`"),
            (json!({"prompt_cache": 1}), "`prompt_cache`"),
        ] {
            let msg = refused(Options::parse(&load(0, options.clone()), 4));
            assert!(msg.contains(key), "{options}: {msg}");
        }
        refused(Options::parse(&load(0, json!([1, 2])), 4));
    }

    #[test]
    fn model_bounds_and_defaults() {
        let opts = Options::parse(&load(0, json!({})), 4).unwrap();
        assert!(opts.adaptive && opts.prompt_cache);
        assert_eq!((opts.slots, opts.queue, opts.threads), (4, 64, 4));
        let off = Options::parse(&load(0, json!({"prompt_cache": false})), 4).unwrap();
        assert!(!off.prompt_cache);
        assert_eq!(
            opts.resolve(8192).unwrap(),
            Resolved {
                context_length: 2048,
                embed_batch_tokens: 2048
            }
        );
        assert_eq!(opts.resolve(512).unwrap().context_length, 512);

        let opts = Options::parse(
            &load(
                0,
                json!({"context_length": 4096, "embed_batch_tokens": 9000}),
            ),
            4,
        )
        .unwrap();
        let err = opts.resolve(8192).unwrap_err();
        assert!(
            err.message.contains("`embed_batch_tokens`") && err.message.contains("16..=8192"),
            "{err}"
        );
        let err = opts.resolve(2048).unwrap_err();
        assert!(err.message.contains("`context_length`"), "{err}");
        let opts = Options::parse(&load(0, json!({"embed_batch_tokens": 256})), 4).unwrap();
        assert_eq!(opts.resolve(8192).unwrap().embed_batch_tokens, 256);
    }

    #[test]
    fn a_kv_cache_beyond_memory_is_refused() {
        if mem_total().is_none() {
            return;
        }
        let err = check_kv_cache(u64::MAX, 64, 1 << 20).unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT);
        assert!(err.message.contains("`slots` 64"), "{err}");
        check_kv_cache(1 << 20, 1, 16).unwrap();
    }
}
