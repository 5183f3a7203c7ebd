//! Loaded models and the data around them: the per-model worker threads (`worker`) and what
//! they call (`backend`), the text-embedding pipeline (`embedding`), JSON tensors for the CLI
//! and HTTP (`tensor_json`), and the scan of model directories (`scan`).

pub mod backend;
pub mod embedding;
pub mod scan;
pub mod tensor_json;
pub mod worker;

pub use backend::Backend;
pub use worker::{EmbedInput, Engine, ModelWorker, RequestStats, WorkerError};
