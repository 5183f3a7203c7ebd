//! The prompt cache: which tokens each sequence's KV cache still holds after its request ended,
//! and which free sequence a new request is placed on so that only its new suffix is decoded.
//!
//! The placement follows llama.cpp's `llama-server`: the free sequence whose cached tokens share
//! the longest prefix with the prompt, if that prefix covers more than a tenth of the prompt;
//! otherwise the least recently used free sequence (an empty one first). At least the prompt's
//! last token is always decoded again (its logits are what the first sampled token comes
//! from), the last two for prompts of `LONE_ROW_BELOW` tokens or more (see [`tail`]).

use llama_cpp_2::token::LlamaToken;

/// Share of the prompt a cached prefix must cover for its sequence to win over the least
/// recently used one (llama-server's `--slot-prompt-similarity` default).
const MIN_SIMILARITY: f64 = 0.1;

/// Prompts shorter than this may end in a decode call of one token. Their sequence's KV range
/// stays under 512 cells, where llama.cpp's CPU flash attention computes a lone row like any
/// other; from 512 cells it splits a lone row's KV range across the threads, which changes its
/// values in the last bits (see `engine::PROMPT_CHUNK`).
pub const LONE_ROW_BELOW: usize = 256;

/// How many of a `len`-token prompt's last tokens are always decoded again: one (its logits
/// give the first sampled token), two for long prompts, whose last row must not be alone.
pub fn tail(len: usize) -> usize {
    if len < LONE_ROW_BELOW {
        1
    } else {
        2
    }
}

/// What one sequence held when its last request ended.
#[derive(Default)]
struct Entry {
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

/// The tokens kept per sequence of one context (a new context starts empty).
pub struct PromptCache {
    enabled: bool,
    entries: Vec<Entry>,
    clock: u64,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The sequence.
    pub seq: usize,
    /// Prompt tokens its KV cache already holds (at most the prompt's length - [`tail`]).
    pub reused: usize,
}

/// How many leading tokens `a` and `b` share.
pub fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PromptCache {
    /// An empty cache for `slots` sequences; with `enabled` false nothing is ever reused.
    pub fn new(slots: usize, enabled: bool) -> Self {
        Self {
            enabled,
            entries: (0..slots).map(|_| Entry::default()).collect(),
            clock: 0,
        }
    }

    /// The sequence among `free` for `prompt`, or None when `free` is empty.
    pub fn place(&self, free: &[usize], prompt: &[LlamaToken]) -> Option<Placement> {
        let reusable = prompt.len().saturating_sub(tail(prompt.len()));
        // The sequence sharing the most tokens, and how many.
        let mut best: Option<(usize, usize)> = None;
        if self.enabled && !prompt.is_empty() {
            for &seq in free {
                let Some(entry) = self.entries.get(seq) else {
                    continue;
                };
                let shared = common_prefix(&entry.tokens, prompt);
                let similar = shared as f64 / prompt.len() as f64 > MIN_SIMILARITY;
                if similar && best.is_none_or(|(_, most)| shared > most) {
                    best = Some((seq, shared));
                }
            }
        }
        let best = best.map(|(seq, shared)| Placement {
            seq,
            reused: shared.min(reusable),
        });
        best.or_else(|| {
            free.iter()
                .copied()
                .min_by_key(|&seq| self.entries.get(seq).map_or(0, |e| e.last_used))
                .map(|seq| Placement { seq, reused: 0 })
        })
    }

    /// Marks `seq` as taken by a request: what it holds now belongs to the running slot.
    pub fn take(&mut self, seq: usize) {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(seq) {
            entry.tokens.clear();
            entry.last_used = self.clock;
        }
    }

    /// Records the tokens `seq`'s KV cache holds now that its request ended.
    pub fn keep(&mut self, seq: usize, tokens: Vec<LlamaToken>) {
        if let Some(entry) = self.entries.get_mut(seq) {
            entry.tokens = if self.enabled { tokens } else { Vec::new() };
        }
    }

    /// Forgets what `seq` holds (its KV cache was cleared).
    pub fn forget(&mut self, seq: usize) {
        if let Some(entry) = self.entries.get_mut(seq) {
            entry.tokens.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&i| LlamaToken::new(i)).collect()
    }

    #[test]
    fn the_longest_shared_prefix_wins_and_the_last_prompt_tokens_are_decoded_again() {
        let mut cache = PromptCache::new(3, true);
        cache.take(0);
        cache.keep(0, toks(&[1, 2, 3, 9]));
        cache.take(1);
        cache.keep(1, toks(&[1, 2, 3, 4, 5, 6]));
        let p = cache
            .place(&[0, 1, 2], &toks(&[1, 2, 3, 4, 5, 7, 8]))
            .unwrap();
        assert_eq!(p, Placement { seq: 1, reused: 5 });
        // The whole prompt is cached: its last token is still decoded.
        let p = cache.place(&[0, 1, 2], &toks(&[1, 2, 3, 4])).unwrap();
        assert_eq!(p, Placement { seq: 1, reused: 3 });
        // A long prompt keeps its last two tokens to decode.
        let long: Vec<i32> = (0..300).collect();
        cache.take(2);
        cache.keep(2, toks(&long));
        let p = cache.place(&[2], &toks(&long)).unwrap();
        assert_eq!(
            p,
            Placement {
                seq: 2,
                reused: 298
            }
        );
        // A busy sequence is never chosen.
        let p = cache.place(&[0, 2], &toks(&[1, 2, 3, 4, 5, 7, 8])).unwrap();
        assert_eq!(p, Placement { seq: 0, reused: 3 });
    }

    #[test]
    fn without_a_similar_prefix_the_least_recently_used_sequence_is_taken() {
        let mut cache = PromptCache::new(3, true);
        for seq in [2, 0, 1] {
            cache.take(seq);
            cache.keep(seq, toks(&[seq as i32 + 10, 1, 2, 3]));
        }
        // Shares 1 of 11 tokens with nothing: no sequence is similar enough.
        let prompt = toks(&[50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            cache.place(&[0, 1, 2], &prompt).unwrap(),
            Placement { seq: 2, reused: 0 }
        );
        // One shared token of 11 (9 %) is not enough either.
        let prompt = toks(&[10, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
        assert_eq!(cache.place(&[0, 1, 2], &prompt).unwrap().reused, 0);
        assert!(cache.place(&[], &prompt).is_none());
    }

    #[test]
    fn a_disabled_or_forgotten_cache_reuses_nothing() {
        let mut cache = PromptCache::new(2, false);
        cache.take(0);
        cache.keep(0, toks(&[1, 2, 3]));
        assert_eq!(
            cache
                .place(&[0, 1], &toks(&[1, 2, 3, 4, 5]))
                .unwrap()
                .reused,
            0
        );
        let mut cache = PromptCache::new(2, true);
        cache.take(0);
        cache.keep(0, toks(&[1, 2, 3]));
        cache.forget(0);
        assert_eq!(
            cache
                .place(&[0, 1], &toks(&[1, 2, 3, 4, 5]))
                .unwrap()
                .reused,
            0
        );
    }
}
