//! What a model worker calls: the [`Backend`] trait, implemented by a plugin's loaded model.
//! Worker threads and the embedding pipeline are generic over it, so their tests run on a
//! stand-in model instead of a plugin library.

use cyxwiz_plugin_host::LoadedModel;
use cyxwiz_sdk::{
    Embeddings, Error as PluginError, GenerateOutput, GenerateRequest, ModelInfo, Tensor,
    TensorView, TokenSink,
};

/// What a worker calls: a plugin's loaded model (or, in tests, a stand-in).
pub trait Backend: Send + Sync + 'static {
    /// Specs, memory and capabilities.
    fn info(&self) -> &ModelInfo;
    /// Tensor inference.
    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, PluginError>;
    /// Text generation, pieces to `sink`.
    fn generate(
        &self,
        _request: &GenerateRequest,
        _sink: &mut dyn TokenSink,
    ) -> Result<GenerateOutput, PluginError> {
        Err(PluginError::unsupported(
            "this model does not generate text",
        ))
    }
    /// Embeddings of texts.
    fn embed(&self, _texts: &[&str]) -> Result<Embeddings, PluginError> {
        Err(PluginError::unsupported("this model does not embed text"))
    }
}

impl Backend for LoadedModel {
    fn info(&self) -> &ModelInfo {
        LoadedModel::info(self)
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, PluginError> {
        LoadedModel::infer(self, inputs)
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateOutput, PluginError> {
        LoadedModel::generate(self, request, sink)
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings, PluginError> {
        LoadedModel::embed(self, texts)
    }
}
