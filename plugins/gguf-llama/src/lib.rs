//! GGUF language models through llama.cpp (the `llama-cpp-2` crate's vendored build): chat
//! and completion with streaming and cancellation, pooled embeddings, tokenization, and
//! continuous batching of concurrent generations (see `engine`).
//!
//! CPU features: the vendored ggml is compiled for x86-64 with AVX, AVX2, FMA, F16C and BMI2
//! (no AVX-512, so it runs on any Haswell-or-newer x86 CPU). The plugin checks them before
//! touching llama.cpp and refuses to load a model on a CPU without them, instead of dying of an
//! illegal instruction.
//!
//! Load options (JSON object): `slots` (parallel sequences, default 4), `context_length`
//! (tokens per sequence, default min(2048, trained context)), `threads_batch` (threads for
//! batches of more than one token: prompts and several streams at once), `queue` (waiting
//! requests, default 64). `LoadOptions.threads` sets the decode threads.
//!
//! Threads: by default (`threads` 0, no `threads_batch`) they adapt to the machine's load
//! (see `adapt`): whenever work starts after idling, the engine takes the cores that other
//! processes and other busy engines leave free, between 1 and all cores. Two threads beat
//! one on a quiet 2-core machine, but ggml's workers wait actively for each other, so on a
//! busy one two threads collapse (measured 23 tokens/s against 94 with one thread). Fixed
//! counts (either option set) are never changed.

mod adapt;
mod embed;
mod engine;
mod gguf;
mod logs;
mod slot;

use cyxwiz_sdk::{
    export_plugin, serde_json::Value, Capabilities, Embeddings, Error, Format, GenerateOutput,
    GenerateRequest, LoadOptions, Model, ModelInfo, Plugin, Result, TokenSink,
};
use engine::{EngineConfig, EngineHandle, Event, Job};
use llama_cpp_2::{
    llama_backend::LlamaBackend,
    model::{params::LlamaModelParams, LlamaChatMessage, LlamaChatTemplate, LlamaModel},
};
use std::{
    path::Path,
    sync::{atomic::AtomicBool, mpsc, Arc, OnceLock},
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
    info: ModelInfo,
    threads_batch: i32,
}

fn option_u32(
    options: &Value,
    key: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32> {
    match options.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "load option `{key}` must be an integer in {}..={}, got {v}",
                    range.start(),
                    range.end()
                ))
            }),
    }
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
        gguf::check_file(path)?;
        let backend = backend()?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let opts = &options.options;
        let slots = option_u32(opts, "slots", 4, 1..=64)?;
        let queue = option_u32(opts, "queue", 64, 0..=100_000)?;
        let adaptive = options.threads == 0 && opts.get("threads_batch").is_none();
        let threads_batch = option_u32(opts, "threads_batch", cores, 1..=1024)? as i32;
        let threads = if options.threads == 0 {
            cores as i32
        } else {
            options.threads as i32
        };

        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| {
                Error::invalid_input(format!(
                    "{}: llama.cpp could not load the model ({e}); its log has the reason",
                    path.display()
                ))
            })?;
        let trained = model.n_ctx_train();
        let context = option_u32(
            opts,
            "context_length",
            trained.clamp(1, 2048),
            16..=trained.max(16),
        )?;
        let model = Arc::new(model);
        let engine = EngineHandle::start(
            backend,
            model.clone(),
            EngineConfig {
                slots,
                context_per_slot: context,
                threads,
                threads_batch,
                adaptive,
                queue: queue as usize,
            },
        )?;
        let template = model.chat_template(None).ok();
        let mut metadata = vec![
            ("slots".to_string(), slots.to_string()),
            ("n_ctx_train".to_string(), trained.to_string()),
            ("n_params".to_string(), model.n_params().to_string()),
            ("chat_template".to_string(), template.is_some().to_string()),
        ];
        for key in ["general.architecture", "general.name", "general.file_type"] {
            if let Ok(v) = model.meta_val_str(key) {
                metadata.push((key.to_string(), v));
            }
        }
        // Weights plus the f16 KV cache of every slot (K and V, one row of n_embd * kv/heads per
        // layer and cell); compute buffers come on top and are not counted.
        let kv_width = u64::try_from(model.n_embd()).unwrap_or(0) * u64::from(model.n_head_kv())
            / u64::from(model.n_head().max(1));
        let kv_cache =
            2 * 2 * u64::from(slots) * u64::from(context) * u64::from(model.n_layer()) * kv_width;
        let info = ModelInfo {
            memory_bytes: model.size() + kv_cache,
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
            info,
            threads_batch,
        })
    }
}

impl LlamaLm {
    fn prompt_text(&self, request: &GenerateRequest) -> Result<String> {
        if request.messages.is_empty() {
            if request.prompt.is_empty() {
                return Err(Error::invalid_input(
                    "the request has neither messages nor a prompt",
                ));
            }
            return Ok(request.prompt.clone());
        }
        let template = self.template.as_ref().ok_or_else(|| {
            Error::unsupported("this model has no chat template in its metadata; send a prompt")
        })?;
        let messages = request
            .messages
            .iter()
            .map(|m| {
                LlamaChatMessage::new(m.role.clone(), m.content.clone())
                    .map_err(|e| Error::invalid_input(format!("chat message: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        self.model
            .apply_chat_template(template, &messages, true)
            .map_err(|e| Error::invalid_input(format!("cannot apply the chat template: {e}")))
    }
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
        if request.params.max_tokens == 0 {
            return Err(Error::invalid_input("`max_tokens` must be at least 1"));
        }
        let text = self.prompt_text(request)?;
        let prompt = self.model.vocab().tokenize(text.as_bytes(), true, true);
        if prompt.is_empty() {
            return Err(Error::invalid_input("the prompt tokenizes to nothing"));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (events, rx) = mpsc::channel();
        self.engine.submit(Job {
            prompt,
            params: request.params.clone(),
            cancel: cancel.clone(),
            events,
        })?;
        for event in rx {
            match event {
                Event::Text(piece) => {
                    if !sink.emit(&piece) {
                        engine::cancel(&cancel);
                    }
                }
                Event::Done(result) => return result,
            }
        }
        Err(Error::runtime("the decoding thread stopped"))
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        embed::embed(&self.model, texts, self.threads_batch)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
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
