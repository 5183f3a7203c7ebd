//! Seeded shuffling and the train/validation split. The generator is the SDK's SplitMix64
//! (written out there so a seed gives the same order on every platform and build, and the
//! same one backends use for dropout).

use super::{Dataset, DatasetError};

pub use cyxwiz_sdk::training::{permutation, SplitMix64};

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
