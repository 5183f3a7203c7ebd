//! Pooled sentence embeddings: texts packed into batches of at most `embed_batch_tokens`
//! tokens (and `MAX_SEQS` texts), each batch decoded as separate sequences, mean-pooled by
//! llama.cpp and L2-normalised. One context per call, sized to the largest batch, never to the
//! request: 32 long texts used to get one context for all their tokens (5 to 21 GB at peak);
//! now memory is bounded by the batch budget, whatever the request holds.

use crate::prompt::Vocab;
use cyxwiz_sdk::{Embeddings, Error, Result};
use llama_cpp_2::{
    context::params::{LlamaContextParams, LlamaPoolingType},
    llama_batch::LlamaBatch,
    model::LlamaModel,
    token::LlamaToken,
};
use std::num::NonZeroU32;

/// Most texts per decoded batch.
const MAX_SEQS: usize = 32;

/// How embeddings are computed for one model.
#[derive(Clone, Debug)]
pub struct EmbedConfig {
    /// Token budget of one batch; also the longest text accepted.
    pub batch_tokens: u32,
    /// Threads for decoding.
    pub threads: i32,
}

/// Packs texts of these token counts, in order, into batches of at most `budget` tokens and
/// `MAX_SEQS` texts; every count must be at most `budget`. Returns index ranges.
fn pack(lens: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, &len) in lens.iter().enumerate() {
        if i > start && (tokens + len > budget || i - start == MAX_SEQS) {
            batches.push(start..i);
            (start, tokens) = (i, 0);
        }
        tokens += len;
    }
    if start < lens.len() {
        batches.push(start..lens.len());
    }
    batches
}

/// The context size for batches of at most `tokens` tokens and `seqs` texts. llama.cpp
/// reserves its worst-case graph with n_ubatch / n_seq_max tokens per sequence; unless
/// n_ubatch is a multiple of the sequence count, that graph has fewer tokens than outputs and
/// mean pooling aborts the process (GGML_ASSERT in build_pooling; found with 2 texts of 25
/// tokens in all). So the size is rounded up to a multiple of `seqs`.
fn context_size(tokens: usize, seqs: usize) -> Result<u32> {
    let seqs = u32::try_from(seqs.max(1)).map_err(|_| Error::runtime("too many sequences"))?;
    let tokens = u32::try_from(tokens).map_err(|_| Error::runtime("batch too large"))?;
    tokens
        .max(16)
        .div_ceil(seqs)
        .checked_mul(seqs)
        .ok_or_else(|| Error::runtime("batch too large"))
}

/// Embeds `texts` with `model`.
pub fn embed(
    model: &LlamaModel,
    vocab: &Vocab,
    texts: &[&str],
    config: &EmbedConfig,
) -> Result<Embeddings> {
    if texts.is_empty() {
        return Err(Error::invalid_input(
            "`input` is empty: give at least one text",
        ));
    }
    let budget = config.batch_tokens as usize;
    let too_long = |i: usize, what: String| {
        Error::invalid_input(format!(
            "input {i} is {what}, but an embedding batch holds at most {budget} tokens (load \
             option `embed_batch_tokens`)"
        ))
    };
    // Every text is checked by its bytes before any is tokenized.
    for (i, text) in texts.iter().enumerate() {
        if text.is_empty() {
            return Err(Error::invalid_input(format!("input {i} is empty")));
        }
        let least = vocab.min_tokens(text.len());
        if least > budget {
            return Err(too_long(
                i,
                format!(
                    "{} bytes, so at least {least} tokens (one token is at most {} bytes here)",
                    text.len(),
                    vocab.max_piece()
                ),
            ));
        }
    }
    let tokenized: Vec<Vec<LlamaToken>> = texts
        .iter()
        .map(|t| model.vocab().tokenize(t.as_bytes(), true, false))
        .collect();
    for (i, tokens) in tokenized.iter().enumerate() {
        if tokens.is_empty() {
            return Err(Error::invalid_input(format!("input {i} is empty")));
        }
        if tokens.len() > budget {
            return Err(too_long(i, format!("{} tokens", tokens.len())));
        }
    }
    let lens: Vec<usize> = tokenized.iter().map(Vec::len).collect();
    let batches = pack(&lens, budget);
    let most_tokens = batches
        .iter()
        .map(|b| lens[b.clone()].iter().sum::<usize>())
        .max()
        .unwrap_or(0);
    let most_seqs = batches.iter().map(|b| b.len()).max().unwrap_or(1);
    let size = context_size(most_tokens, most_seqs)?;
    let n_seq = u32::try_from(most_seqs).map_err(|_| Error::runtime("too many sequences"))?;

    let backend = crate::backend()?;
    // Unified KV cells: any one text may use the whole budget (with per-sequence caches each
    // would get size / n_seq cells).
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_ctx(NonZeroU32::new(size))
        .with_n_batch(size)
        .with_n_ubatch(size)
        .with_n_seq_max(n_seq)
        .with_kv_unified(true)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| Error::out_of_memory(format!("cannot create an embedding context: {e}")))?;
    // Each token belongs to one sequence.
    let mut batch = LlamaBatch::new(size as usize, 1);

    let dim = usize::try_from(model.n_embd()).map_err(|_| Error::runtime("negative n_embd"))?;
    let mut data = Vec::with_capacity(dim * texts.len());
    let mut prompt_tokens = 0u32;
    for range in batches {
        ctx.clear_kv_cache();
        batch.clear();
        let chunk = &tokenized[range];
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
        let n: usize = chunk.iter().map(Vec::len).sum();
        prompt_tokens = prompt_tokens.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(Embeddings {
        dim,
        data,
        prompt_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_order_and_respect_the_budget() {
        assert_eq!(pack(&[5, 5, 5], 10), vec![0..2, 2..3]);
        assert_eq!(pack(&[10, 1, 10], 10), vec![0..1, 1..2, 2..3]);
        assert_eq!(pack(&[3], 10), vec![0..1]);
        // Never more than MAX_SEQS texts per batch, however short.
        let many = vec![1; MAX_SEQS * 2 + 1];
        let batches = pack(&many, 1000);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() <= MAX_SEQS));
        // 32 long texts: 32 batches, not one context for all their tokens.
        let long = vec![2000; 32];
        let batches = pack(&long, 2048);
        assert_eq!(batches.len(), 32);
        assert_eq!(context_size(2000, 1).unwrap(), 2000);
    }

    #[test]
    fn context_sizes_are_multiples_of_the_sequence_count() {
        for (tokens, seqs) in [(25, 2), (39, 3), (7, 7), (2048, 32), (1, 1), (0, 5)] {
            let size = context_size(tokens, seqs).unwrap();
            assert_eq!(size % seqs as u32, 0, "{tokens} tokens, {seqs} seqs");
            assert!(size as usize >= tokens.max(16));
            assert!((size as usize) < tokens.max(16) + seqs);
        }
    }
}
