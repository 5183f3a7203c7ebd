//! Pooled sentence embeddings: texts decoded as separate sequences of one batch in a context
//! made for the call, mean-pooled by llama.cpp and L2-normalised.

use cyxwiz_sdk::{Embeddings, Error, Result};
use llama_cpp_2::{
    context::params::{LlamaContextParams, LlamaPoolingType},
    llama_batch::LlamaBatch,
    model::LlamaModel,
};
use std::num::NonZeroU32;

/// Texts per decoded batch.
const CHUNK: usize = 32;

/// Embeds `texts` with `model`.
pub fn embed(model: &LlamaModel, texts: &[&str], threads: i32) -> Result<Embeddings> {
    if texts.is_empty() {
        return Err(Error::invalid_input(
            "`input` is empty: give at least one text",
        ));
    }
    let backend = crate::backend()?;
    let limit = model.n_ctx_train() as usize;
    let tokenized: Vec<_> = texts
        .iter()
        .map(|t| model.vocab().tokenize(t.as_bytes(), true, false))
        .collect();
    for (i, tokens) in tokenized.iter().enumerate() {
        if tokens.is_empty() {
            return Err(Error::invalid_input(format!("input {i} is empty")));
        }
        if tokens.len() > limit {
            return Err(Error::invalid_input(format!(
                "input {i} is {} tokens; the model takes at most {limit}",
                tokens.len()
            )));
        }
    }
    let dim = usize::try_from(model.n_embd()).map_err(|_| Error::runtime("negative n_embd"))?;
    let mut data = Vec::with_capacity(dim * texts.len());
    let mut prompt_tokens = 0u32;
    for chunk in tokenized.chunks(CHUNK) {
        let total: usize = chunk.iter().map(Vec::len).sum();
        let n = u32::try_from(total).map_err(|_| Error::invalid_input("batch too large"))?;
        // llama.cpp reserves its worst-case graph with n_ubatch / n_seq_max tokens per
        // sequence; unless n_ubatch is a multiple of the sequence count, that graph has fewer
        // tokens than outputs and mean pooling aborts the process (GGML_ASSERT in
        // build_pooling; found with 2 texts of 25 tokens in all).
        let seqs = chunk.len() as u32;
        let size = n.max(16).div_ceil(seqs) * seqs;
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_ctx(NonZeroU32::new(size))
            .with_n_batch(size)
            .with_n_ubatch(size)
            .with_n_seq_max(chunk.len() as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = model.new_context(backend, params).map_err(|e| {
            Error::out_of_memory(format!("cannot create an embedding context: {e}"))
        })?;
        let mut batch = LlamaBatch::new(total, chunk.len() as i32);
        for (seq, tokens) in chunk.iter().enumerate() {
            for (pos, token) in tokens.iter().enumerate() {
                batch
                    .add(*token, pos as i32, &[seq as i32], true)
                    .map_err(|e| Error::runtime(format!("batch: {e}")))?;
            }
        }
        ctx.decode(&mut batch)
            .map_err(|e| Error::runtime(format!("llama.cpp failed to embed: {e}")))?;
        for seq in 0..chunk.len() {
            let v = ctx
                .embeddings_seq_ith(seq as i32)
                .map_err(|e| Error::runtime(format!("no pooled embedding: {e}")))?;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            data.extend(v.iter().map(|x| x / norm));
        }
        prompt_tokens += n;
    }
    Ok(Embeddings {
        dim,
        data,
        prompt_tokens,
    })
}
