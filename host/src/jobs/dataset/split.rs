//! Seeded shuffling and the train/validation split. The generator is SplitMix64, written out
//! here so a seed gives the same order on every platform and every build, whatever version
//! of a random-number crate the workspace happens to pull in.

use super::{Dataset, DatasetError};

/// SplitMix64: a small, fast, well-mixed 64-bit generator (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-32 for the
    /// sizes datasets have).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// `0..n` in an order fixed by `seed` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// A dataset split into the part trained on and the part held out for validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The samples trained on (at least one).
    pub train: Dataset,
    /// The held-out samples; `None` when the validation fraction is 0 or rounds to none.
    pub validation: Option<Dataset>,
}

impl Dataset {
    /// The same samples in an order fixed by `seed`.
    pub fn shuffled(&self, seed: u64) -> Dataset {
        self.gather(&permutation(self.len(), seed))
    }

    /// Shuffles with `seed`, then holds out the first `floor(len × validation_fraction)`
    /// samples for validation. The fraction must be finite and in `0 ≤ v < 1`, so at least
    /// one sample is left to train on.
    pub fn split(&self, validation_fraction: f64, seed: u64) -> Result<Split, DatasetError> {
        if !(0.0..1.0).contains(&validation_fraction) {
            return Err(DatasetError::BadSplit {
                value: validation_fraction,
            });
        }
        let order = permutation(self.len(), seed);
        let held = (self.len() as f64 * validation_fraction).floor() as usize;
        let held = held.min(self.len() - 1);
        let validation = (held > 0).then(|| self.gather(&order[..held]));
        Ok(Split {
            train: self.gather(&order[held..]),
            validation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(n: usize) -> Dataset {
        let samples = (0..n * 2).map(|v| v as f32).collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        Dataset::new("t", samples, labels, vec![2], 3).unwrap()
    }

    #[test]
    fn permutation_is_deterministic_per_seed_and_complete() {
        let a = permutation(1000, 7);
        assert_eq!(a, permutation(1000, 7));
        assert_ne!(a, permutation(1000, 8));
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert!(permutation(0, 1).is_empty());
    }

    #[test]
    fn shuffle_keeps_samples_with_their_labels() {
        let d = counting(50);
        let s = d.shuffled(42);
        assert_eq!(s, d.shuffled(42));
        assert_ne!(s, d);
        for i in 0..s.len() {
            let original = s.sample(i)[0] as usize / 2;
            assert_eq!(s.sample(i), d.sample(original));
            assert_eq!(s.labels()[i], d.labels()[original]);
        }
    }

    #[test]
    fn split_sizes_follow_the_fraction_and_the_seed() {
        let d = counting(100);
        let s = d.split(0.2, 1).unwrap();
        assert_eq!(s.train.len(), 80);
        assert_eq!(s.validation.as_ref().map(Dataset::len), Some(20));
        assert_eq!(s, d.split(0.2, 1).unwrap());
        assert_ne!(s, d.split(0.2, 2).unwrap());
        let none = d.split(0.0, 1).unwrap();
        assert_eq!((none.train.len(), none.validation), (100, None));
        let tiny = counting(1).split(0.9, 1).unwrap();
        assert_eq!((tiny.train.len(), tiny.validation), (1, None));
    }

    #[test]
    fn split_fraction_out_of_range_is_refused() {
        for v in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = counting(10).split(v, 1).unwrap_err();
            assert!(matches!(err, DatasetError::BadSplit { .. }), "{v}: {err:?}");
        }
    }
}
