//! One sequence of the continuous batch: its prompt, sampler, position, and the text it has
//! produced, with stop strings held back until they can no longer match and UTF-8 pieces
//! joined before they are sent. It counts the pieces it sends, so the engine knows when the
//! caller has answered them all (see `engine::Control`).

use crate::cache::tail;
use crate::engine::{Event, Job, AHEAD};
use cyxwiz_sdk::{Error, FinishReason, GenerateOutput, Result, SamplingParams};
use llama_cpp_2::{
    context::LlamaContext, llama_batch::LlamaBatch, model::LlamaModel, sampling::LlamaSampler,
    token::LlamaToken,
};
/// Whether a slot may take part in the next batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Its caller answered every piece and wants more.
    Ready,
    /// More than `AHEAD` pieces it was sent are unanswered.
    Unanswered,
    /// Its caller cancelled or went away.
    Cancelled,
}

/// What sampling one token led to.
pub enum Step {
    /// Keep generating.
    Continue,
    /// Stop with this reason.
    Finished(FinishReason),
}

/// An active sequence.
pub struct Slot {
    seq: i32,
    job: Job,
    sampler: LlamaSampler,
    fed: usize,
    pos: i32,
    /// The prompt tokens in this sequence's KV cache, in position order, that a later request
    /// may reuse (`cache`): those decoded in batches of two or more tokens, as a fresh prompt
    /// is. Generated tokens and a token decoded alone are computed by other kernels, so their
    /// values differ in the last bits from what prompt processing gives; reusing them would
    /// change greedy output. The history stops at the first such token.
    history: Vec<LlamaToken>,
    /// Whether `history` still grows.
    claiming: bool,
    /// Prompt tokens added to `history` in the step under way.
    step_claimed: usize,
    /// Prompt tokens already in the KV cache when the request arrived.
    reused: usize,
    next: Option<LlamaToken>,
    generated: u32,
    max_tokens: u32,
    pending_bytes: Vec<u8>,
    text: String,
    sent: usize,
    /// Pieces of text sent to the caller.
    delivered: u64,
    gone: bool,
}

fn sampler(model: &LlamaModel, params: &SamplingParams) -> LlamaSampler {
    let mut chain = Vec::new();
    if (params.repeat_penalty - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            64,
            params.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if params.top_k > 0 {
        chain.push(LlamaSampler::top_k(params.top_k as i32));
    }
    if params.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(params.top_p, 1));
    }
    if params.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(params.min_p, 1));
    }
    chain.push(LlamaSampler::temp(params.temperature));
    let seed = params.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    chain.push(LlamaSampler::dist((seed ^ (seed >> 32)) as u32));
    LlamaSampler::chain_simple(chain)
}

impl Slot {
    /// Starts a sequence whose first `reused` prompt tokens are already in the KV cache (the
    /// caller checked they are the same tokens, and fewer than the prompt), or answers the job
    /// with an error (prompt too long) and returns None.
    pub fn start(
        model: &LlamaModel,
        seq: i32,
        job: Job,
        context: u32,
        reused: usize,
    ) -> Option<Slot> {
        let prompt_len = job.prompt.len() as u32;
        if prompt_len >= context {
            let _ = job
                .events
                .send(Event::Done(Err(Error::invalid_input(format!(
                "the prompt is {prompt_len} tokens, but the context holds {context} per sequence"
            )))));
            return None;
        }
        let max_tokens = job.params.max_tokens.min(context - prompt_len);
        // The prompt's last token, or two (see `cache::tail`), are always decoded.
        let reused = reused.min(job.prompt.len().saturating_sub(tail(job.prompt.len())));
        let mut history = Vec::with_capacity(job.prompt.len() + max_tokens as usize);
        history.extend_from_slice(&job.prompt[..reused]);
        Some(Slot {
            seq,
            sampler: sampler(model, &job.params),
            job,
            fed: reused,
            pos: i32::try_from(reused).unwrap_or(i32::MAX),
            history,
            claiming: true,
            step_claimed: 0,
            reused,
            next: None,
            generated: 0,
            max_tokens,
            pending_bytes: Vec::new(),
            text: String::new(),
            sent: 0,
            delivered: 0,
            gone: false,
        })
    }

    /// Whether the caller cancelled, went away, or is more than `AHEAD` answers behind.
    pub fn readiness(&self) -> Readiness {
        // `answered` first: an answer that stopped the stream is published after the
        // cancellation, so seeing the answer guarantees seeing the cancellation too.
        let answered = self.job.control.answered();
        if self.gone || self.job.control.cancelled() {
            Readiness::Cancelled
        } else if answered + AHEAD < self.delivered {
            Readiness::Unanswered
        } else {
            Readiness::Ready
        }
    }

    /// Adds this slot's next tokens to `batch` within `budget`; returns the batch index whose
    /// logits must be sampled, if this step ends the prompt or continues generation.
    pub fn feed(&mut self, batch: &mut LlamaBatch, budget: &mut usize) -> Result<Option<i32>> {
        let add_err = |e| Error::runtime(format!("batch is full: {e}"));
        if self.fed < self.job.prompt.len() {
            let left = self.job.prompt.len() - self.fed;
            let mut take = (*budget).min(left);
            // A long prompt never leaves a last chunk of one token: llama.cpp may give a lone
            // row other kernels there (see `cache::LONE_ROW_BELOW`).
            if take > 2 && left - take == 1 && tail(self.job.prompt.len()) == 2 {
                take -= 1;
            }
            if take == 0 {
                return Ok(None);
            }
            let end = self.fed + take;
            for i in self.fed..end {
                let last = i + 1 == self.job.prompt.len();
                batch
                    .add(self.job.prompt[i], self.pos, &[self.seq], last)
                    .map_err(add_err)?;
                if self.claiming {
                    self.history.push(self.job.prompt[i]);
                    self.step_claimed += 1;
                }
                self.pos += 1;
            }
            self.fed = end;
            *budget -= take;
            return Ok((self.fed == self.job.prompt.len()).then(|| batch.n_tokens() - 1));
        }
        let Some(token) = self.next.take() else {
            return Ok(None);
        };
        if *budget == 0 {
            self.next = Some(token);
            return Ok(None);
        }
        batch
            .add(token, self.pos, &[self.seq], true)
            .map_err(add_err)?;
        self.pos += 1;
        *budget -= 1;
        Ok(Some(batch.n_tokens() - 1))
    }

    /// Whether prompt tokens are still to be decoded.
    pub fn prompting(&self) -> bool {
        self.fed < self.job.prompt.len()
    }

    /// Called after each decoded batch; `single` when the batch held one token only.
    pub fn decoded(&mut self, single: bool) {
        if single && self.step_claimed > 0 {
            self.history
                .truncate(self.history.len() - self.step_claimed);
            self.claiming = false;
        }
        self.step_claimed = 0;
    }

    fn send(&mut self, event: Event) {
        let text = matches!(event, Event::Text(_));
        if self.job.events.send(event).is_err() {
            self.gone = true;
        } else if text {
            self.delivered += 1;
        }
    }

    /// Samples the token at `index`, streams its text, and says whether the sequence ends.
    pub fn sample(&mut self, model: &LlamaModel, ctx: &LlamaContext<'_>, index: i32) -> Step {
        let token = self.sampler.sample(ctx, index);
        if model.vocab().is_eog(token) {
            return Step::Finished(FinishReason::STOP);
        }
        self.generated += 1;
        self.pending_bytes
            .extend(model.vocab().token_to_piece(token, false, None));
        match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => {
                self.text.push_str(s);
                self.pending_bytes.clear();
            }
            Err(e) if e.error_len().is_some() => {
                // Invalid bytes (not a split character): replace them and move on.
                self.text
                    .push_str(&String::from_utf8_lossy(&self.pending_bytes));
                self.pending_bytes.clear();
            }
            Err(e) => {
                let valid = e.valid_up_to();
                let (head, tail) = self.pending_bytes.split_at(valid);
                self.text.push_str(std::str::from_utf8(head).unwrap_or(""));
                self.pending_bytes = tail.to_vec();
            }
        }
        if let Some(at) = self.stop_position() {
            self.text.truncate(at);
            return Step::Finished(FinishReason::STOP);
        }
        self.flush(false);
        if self.generated >= self.max_tokens {
            return Step::Finished(FinishReason::LENGTH);
        }
        self.next = Some(token);
        Step::Continue
    }

    /// The byte offset of the first stop string in the unsent text, if any.
    fn stop_position(&self) -> Option<usize> {
        // A stop string may straddle the sent boundary by at most its length - 1 bytes.
        let longest = self.job.params.stop.iter().map(String::len).max()?;
        let mut from = self.sent.saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.job
            .params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| from + p))
            .min()
    }

    /// Sends the text that can no longer become part of a stop string (all of it when `all`).
    fn flush(&mut self, all: bool) {
        let hold = if all {
            0
        } else {
            self.job
                .params
                .stop
                .iter()
                .map(|s| s.len().saturating_sub(1))
                .max()
                .unwrap_or(0)
        };
        let mut end = self.text.len().saturating_sub(hold).max(self.sent);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        if end > self.sent {
            let piece = self.text[self.sent..end].to_string();
            self.sent = end;
            self.send(Event::Text(piece));
        }
    }

    /// Ends the sequence: flushes held-back text (unless a stop string ended it) and reports.
    /// Returns the prompt tokens a later request may reuse (see `history`; every token it fed
    /// was decoded: a slot finishes only between decode steps).
    pub fn finish(mut self, reason: FinishReason) -> Vec<LlamaToken> {
        if reason != FinishReason::CANCELLED {
            self.flush(true);
        }
        let output = GenerateOutput {
            finish_reason: reason,
            prompt_tokens: self.job.prompt.len() as u32,
            completion_tokens: self.generated,
            cached_tokens: u32::try_from(self.reused).unwrap_or(u32::MAX),
        };
        self.send(Event::Done(Ok(output)));
        std::mem::take(&mut self.history)
    }

    /// Ends the sequence with an error.
    pub fn fail(mut self, error: Error) {
        self.send(Event::Done(Err(error)));
    }
}
