//! GGUF language models through llama.cpp (the `llama-cpp-2` crate's vendored build): chat
//! and completion with streaming and cancellation, pooled embeddings, tokenization, and
//! continuous batching of concurrent generations (see `engine`).
//!
//! CPU features: the vendored ggml is compiled for x86-64 with AVX, AVX2, FMA, F16C and BMI2
//! (no AVX-512, so it runs on any Haswell-or-newer x86 CPU). The plugin checks them before
//! touching llama.cpp and refuses to load a model on a CPU without them, instead of dying of an
//! illegal instruction.
//!
//! Load options (JSON object), all range-checked before llama.cpp sees them (`options`):
//! `slots` (parallel sequences, 1..=64, default 4), `context_length` (tokens per sequence,
//! 16..=trained context, default min(2048, trained)), `threads_batch` (threads for batches of
//! more than one token: prompts and several streams at once; 1..=the CPUs available),
//! `queue` (waiting requests, 0..=100000, default 64), `embed_batch_tokens` (token budget of
//! one embedding batch and so the longest text `embed` takes, 16..=trained context, default
//! `context_length`), `prompt_cache` (true or false, default true: each sequence keeps its KV
//! cache after a request, and a new request goes where the longest prefix of its prompt is
//! cached, so only the rest is decoded; see `cache`). `LoadOptions.threads` sets the decode
//! threads, at most the CPUs available to the process.
//!
//! Threads: by default (`threads` 0, no `threads_batch`) they adapt to the machine's load
//! (see `adapt`): whenever work starts after idling, the engine takes the cores that other
//! processes and other busy engines leave free, between 1 and all cores. Two threads beat
//! one on a quiet 2-core machine, but ggml's workers wait actively for each other, so on a
//! busy one two threads collapse (measured 23 tokens/s against 94 with one thread). Fixed
//! counts (either option set) are never changed.
//!
//! Prompts (`prompt`): special tokens come only from the chat template; message contents and
//! plain prompts are tokenized as text, after a byte-length check against the context.
//!
//! Modules: `engine` (decoding thread, continuous batching, cancellation), `cache` (prompt
//! prefixes kept per sequence), `slot` (one sequence), `prompt` (templates and tokens), `embed` (pooled embeddings in token-budgeted
//! batches), `options` (load options), `adapt` (thread counts from the load), `gguf` (file
//! check), `logs` (llama.cpp's log to `tracing`).

mod adapt;
mod cache;
mod embed;
mod engine;
mod gguf;
mod logs;
mod options;
mod prompt;
mod slot;

use cyxwiz_sdk::{
    export_plugin, serde_json::Value, Capabilities, Embeddings, Error, Format, GenerateOutput,
    GenerateRequest, LoadOptions, Model, ModelInfo, Plugin, Result, SamplingParams, TokenSink,
};
use engine::{CancelOnDrop, EngineConfig, EngineHandle, Event, Job};
use llama_cpp_2::{
    llama_backend::LlamaBackend,
    model::{params::LlamaModelParams, LlamaChatTemplate, LlamaModel},
    token::LlamaToken,
};
use options::Options;
use prompt::Vocab;
use std::{
    path::Path,
    sync::{mpsc, Arc, OnceLock},
};

/// One llama.cpp backend per process.
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            logs::install();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::runtime(format!("cannot initialise llama.cpp: {e}")))
}

/// The CPU features the vendored ggml build uses.
fn check_cpu() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let missing: Vec<&str> = [
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
        ]
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            return Err(Error::unsupported(format!(
                "this build of llama.cpp needs AVX, AVX2, FMA, F16C and BMI2; this CPU lacks {}",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// The plugin.
#[derive(Default)]
pub struct GgufLlama;

/// A loaded model and its decoding engine.
pub struct LlamaLm {
    model: Arc<LlamaModel>,
    engine: EngineHandle,
    template: Option<LlamaChatTemplate>,
    vocab: Vocab,
    info: ModelInfo,
    embed: embed::EmbedConfig,
}

impl Plugin for GgufLlama {
    const NAME: &'static str = "gguf-llama";
    const DESCRIPTION: &'static str = "GGUF language models through llama.cpp";
    const FORMATS: &'static [Format] = &[Format {
        name: "gguf",
        extensions: &["gguf"],
    }];
    const CAPABILITIES: Capabilities =
        Capabilities::TEXT_GENERATION.union(Capabilities::EMBEDDINGS);
    type Model = LlamaLm;

    fn runtime(_options: &Value) -> Result<String> {
        check_cpu()?;
        Ok("llama.cpp (llama-cpp-2 0.1.160, AVX2)".to_string())
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<LlamaLm> {
        check_cpu()?;
        // Every option is checked before llama.cpp is called at all.
        let opts = Options::parse(options, options::cores())?;
        gguf::check_file(path)?;
        let backend = backend()?;

        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| {
                Error::invalid_input(format!(
                    "{}: llama.cpp could not load the model ({e}); its log has the reason",
                    path.display()
                ))
            })?;
        let trained = model.n_ctx_train();
        let resolved = opts.resolve(trained)?;
        let (slots, context) = (opts.slots, resolved.context_length);
        // Weights plus the f16 KV cache of every slot (K and V, one row of n_embd * kv/heads per
        // layer and cell); compute buffers come on top and are not counted.
        let kv_width = u64::try_from(model.n_embd()).unwrap_or(0) * u64::from(model.n_head_kv())
            / u64::from(model.n_head().max(1));
        let kv_cache = (2u64 * 2 * u64::from(slots) * u64::from(context))
            .saturating_mul(u64::from(model.n_layer()))
            .saturating_mul(kv_width);
        options::check_kv_cache(kv_cache, slots, context)?;
        let model = Arc::new(model);
        let engine = EngineHandle::start(
            backend,
            model.clone(),
            EngineConfig {
                slots,
                context_per_slot: context,
                threads: opts.threads,
                threads_batch: opts.threads_batch,
                adaptive: opts.adaptive,
                queue: opts.queue as usize,
                prompt_cache: opts.prompt_cache,
            },
        )?;
        let template = model.chat_template(None).ok();
        let vocab = Vocab::new(&model);
        let mut metadata = vec![
            ("slots".to_string(), slots.to_string()),
            ("n_ctx_train".to_string(), trained.to_string()),
            ("n_params".to_string(), model.n_params().to_string()),
            ("chat_template".to_string(), template.is_some().to_string()),
            (
                "embed_batch_tokens".to_string(),
                resolved.embed_batch_tokens.to_string(),
            ),
        ];
        for key in ["general.architecture", "general.name", "general.file_type"] {
            if let Ok(v) = model.meta_val_str(key) {
                metadata.push((key.to_string(), v));
            }
        }
        let info = ModelInfo {
            memory_bytes: model.size().saturating_add(kv_cache),
            capabilities: Self::CAPABILITIES,
            context_length: context,
            embedding_dim: u32::try_from(model.n_embd()).unwrap_or(0),
            metadata,
            ..ModelInfo::default()
        };
        Ok(LlamaLm {
            model,
            engine,
            template,
            vocab,
            info,
            embed: embed::EmbedConfig {
                batch_tokens: resolved.embed_batch_tokens,
                threads: opts.threads_batch,
            },
        })
    }
}

impl LlamaLm {
    /// The request's prompt as tokens: chat messages through the model's template, or the
    /// plain prompt, refused by its length in bytes when it cannot fit the context.
    fn prompt_tokens(&self, request: &GenerateRequest) -> Result<Vec<LlamaToken>> {
        let context = self.info.context_length;
        if request.messages.is_empty() {
            if request.prompt.is_empty() {
                return Err(Error::invalid_input(
                    "the request has neither messages nor a prompt",
                ));
            }
            return self.vocab.prompt(&self.model, &request.prompt, context);
        }
        let template = self.template.as_ref().ok_or_else(|| {
            Error::unsupported("this model has no chat template in its metadata; send a prompt")
        })?;
        // A first look at the size, before the template is even rendered.
        let bytes: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let least = self.vocab.min_tokens(bytes);
        if least >= context as usize {
            return Err(Error::invalid_input(format!(
                "the messages are {bytes} bytes, so at least {least} tokens (one token is at \
                 most {} bytes here), but the context holds {context} per sequence",
                self.vocab.max_piece()
            )));
        }
        self.vocab
            .chat(&self.model, template, &request.messages, context)
    }
}

/// Sampling numbers llama.cpp would take at face value (a NaN temperature, a top-k that wraps
/// negative) are refused before a sampler is built.
fn check_sampling(params: &SamplingParams) -> Result<()> {
    let bad = |key: &str, bound: &str, got: f32| {
        Err(Error::invalid_input(format!(
            "`{key}` must be {bound}, got {got}"
        )))
    };
    if params.max_tokens == 0 {
        return Err(Error::invalid_input("`max_tokens` must be at least 1"));
    }
    if !(params.temperature.is_finite() && params.temperature >= 0.0) {
        return bad("temperature", "a finite number >= 0", params.temperature);
    }
    if !(0.0..=1.0).contains(&params.top_p) {
        return bad("top_p", "in 0..=1", params.top_p);
    }
    if !(0.0..=1.0).contains(&params.min_p) {
        return bad("min_p", "in 0..=1", params.min_p);
    }
    if !(params.repeat_penalty.is_finite() && params.repeat_penalty > 0.0) {
        return bad(
            "repeat_penalty",
            "a finite number > 0",
            params.repeat_penalty,
        );
    }
    if i32::try_from(params.top_k).is_err() {
        return Err(Error::invalid_input(format!(
            "`top_k` must be at most {}, got {}",
            i32::MAX,
            params.top_k
        )));
    }
    Ok(())
}

impl Model for LlamaLm {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateOutput> {
        check_sampling(&request.params)?;
        let prompt = self.prompt_tokens(request)?;
        if prompt.is_empty() {
            return Err(Error::invalid_input("the prompt tokenizes to nothing"));
        }
        let control = self.engine.control();
        // Leaving early (a panicking sink) cancels the request.
        let _cancel_on_drop = CancelOnDrop(control.clone());
        let (events, rx) = mpsc::channel();
        self.engine.submit(Job {
            prompt,
            params: request.params.clone(),
            control: control.clone(),
            events,
        })?;
        let mut open = true;
        for event in rx {
            match event {
                Event::Text(piece) => {
                    // The engine waits for this answer before the slot decodes again; once the
                    // sink said stop it is never called again.
                    open = open && sink.emit(&piece);
                    control.answer(open);
                }
                Event::Done(result) => return result,
            }
        }
        Err(Error::runtime("the decoding thread stopped"))
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        embed::embed(&self.model, &self.vocab, texts, &self.embed)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        // llama-cpp-2 panics beyond i32::MAX bytes; say so instead.
        if i32::try_from(text.len()).is_err() {
            return Err(Error::invalid_input(format!(
                "the text is {} bytes; at most {} can be tokenized",
                text.len(),
                i32::MAX
            )));
        }
        Ok(self
            .model
            .vocab()
            .tokenize(text.as_bytes(), add_special, false)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect())
    }
}

export_plugin!(GgufLlama);

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::ErrorKind;

    #[test]
    fn sampling_numbers_llama_cpp_would_take_at_face_value_are_refused() {
        let ok = SamplingParams::default();
        check_sampling(&ok).unwrap();
        for (params, key) in [
            (
                SamplingParams {
                    max_tokens: 0,
                    ..ok.clone()
                },
                "`max_tokens`",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..ok.clone()
                },
                "`temperature`",
            ),
            (
                SamplingParams {
                    temperature: -1.0,
                    ..ok.clone()
                },
                "`temperature`",
            ),
            (
                SamplingParams {
                    temperature: f32::INFINITY,
                    ..ok.clone()
                },
                "`temperature`",
            ),
            (
                SamplingParams {
                    top_p: 1.5,
                    ..ok.clone()
                },
                "`top_p`",
            ),
            (
                SamplingParams {
                    top_p: f32::NAN,
                    ..ok.clone()
                },
                "`top_p`",
            ),
            (
                SamplingParams {
                    min_p: -0.1,
                    ..ok.clone()
                },
                "`min_p`",
            ),
            (
                SamplingParams {
                    repeat_penalty: 0.0,
                    ..ok.clone()
                },
                "`repeat_penalty`",
            ),
            (
                SamplingParams {
                    repeat_penalty: f32::NAN,
                    ..ok.clone()
                },
                "`repeat_penalty`",
            ),
            (
                SamplingParams {
                    top_k: u32::MAX,
                    ..ok.clone()
                },
                "`top_k`",
            ),
        ] {
            let err = check_sampling(&params).unwrap_err();
            assert_eq!(err.kind, ErrorKind::INVALID_INPUT);
            assert!(err.message.contains(key), "{params:?}: {err}");
        }
    }
}
