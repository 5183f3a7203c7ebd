//! Training datasets the host loads for jobs: the in-memory [`Dataset`] (f32 samples, u32
//! labels, a sample shape and a class count), its typed errors, and the map of the readers.
//! `idx` reads MNIST-format files, `csv` reads numeric CSV, `source` turns a dataset URI into
//! files inside the allowed directories, `split` shuffles (seeded) and splits. Batching and
//! tensors are the executor's business.

pub mod csv;
pub mod idx;
pub mod source;
pub mod split;

use std::path::PathBuf;

pub use source::{load, DatasetSource, LoadedDataset, SourceConfig};
pub use split::Split;

/// The most samples any dataset may hold (Fashion-MNIST has 70,000).
pub const MAX_SAMPLES: usize = 10_000_000;
/// The most f32 values one sample may hold (a 3×1024×1024 image).
pub const MAX_SAMPLE_LEN: usize = 3 * 1024 * 1024;
/// The most values (samples × sample length) a dataset may hold: 1 GiB of f32.
pub const MAX_VALUES: usize = 256 * 1024 * 1024;
/// The most distinct classes a label may name (labels are `0..MAX_CLASSES`).
pub const MAX_CLASSES: u32 = 10_000;

/// Why a dataset could not be loaded; each variant names the file (or `inline`) and the field.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The dataset URI has a scheme we do not load.
    #[error("dataset URI {uri:?}: unknown scheme {scheme:?} (expected builtin://, file:// or inline data)")]
    UnknownScheme {
        /// The whole URI.
        uri: String,
        /// The scheme it names.
        scheme: String,
    },
    /// `builtin://NAME` names no built-in dataset.
    #[error("unknown built-in dataset {name:?} (known: fashion-mnist, digits)")]
    UnknownBuiltin {
        /// The name after `builtin://`.
        name: String,
    },
    /// A file the dataset needs does not exist.
    #[error("dataset file {path} does not exist{hint}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// How to get it, or empty.
        hint: String,
    },
    /// A `file://` path is relative, has `..`, or (after resolving symlinks) lies outside
    /// every configured dataset directory.
    #[error("dataset path {path} is outside the allowed dataset directories ({reason})")]
    OutsideDirs {
        /// The path as given.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// Reading a file failed.
    #[error("reading dataset file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Inline dataset bytes are over the configured cap.
    #[error("inline dataset is {size} bytes, over the limit of {limit} bytes")]
    InlineTooLarge {
        /// The size given.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// A file (or its decompressed content) or a count in it is over a fixed bound.
    #[error("dataset {file}: {what} is {got}, over the limit of {limit}")]
    TooLarge {
        /// The file name or `inline`.
        file: String,
        /// What was too large.
        what: String,
        /// The value found.
        got: u64,
        /// The bound.
        limit: u64,
    },
    /// A file ends before the data its header promises.
    #[error("dataset {file} is truncated: {what}")]
    Truncated {
        /// The file name or `inline`.
        file: String,
        /// What is missing.
        what: String,
    },
    /// An IDX header is not one we read.
    #[error("dataset {file}: not an IDX file we read: {reason}")]
    BadIdx {
        /// The file name or `inline`.
        file: String,
        /// What is wrong with the header.
        reason: String,
    },
    /// The image and label files disagree on the number of samples.
    #[error("dataset {file}: {images} images but {labels} labels")]
    CountMismatch {
        /// The image file name or `inline`.
        file: String,
        /// Images in the image file.
        images: usize,
        /// Labels in the label file.
        labels: usize,
    },
    /// The CSV header has no column with the label's name.
    #[error("dataset {file}: no label column {column:?} in the header (columns: {header})")]
    MissingLabelColumn {
        /// The file name or `inline`.
        file: String,
        /// The column asked for.
        column: String,
        /// The header's columns, comma-joined (shortened if long).
        header: String,
    },
    /// A CSV cell is not a number.
    #[error("dataset {file}: row {row}, column {column:?}: {cell:?} is not a number")]
    NonNumeric {
        /// The file name or `inline`.
        file: String,
        /// The 1-based line number.
        row: usize,
        /// The column's name (or index when there is no header).
        column: String,
        /// The cell (shortened if long).
        cell: String,
    },
    /// A CSV row has a different number of cells than the header.
    #[error("dataset {file}: row {row} has {got} cells, expected {expected}")]
    Ragged {
        /// The file name or `inline`.
        file: String,
        /// The 1-based line number.
        row: usize,
        /// Cells in the header.
        expected: usize,
        /// Cells in this row.
        got: usize,
    },
    /// A label is not a small non-negative integer.
    #[error("dataset {file}: row {row}: label {value:?} is not an integer in 0..{max}")]
    BadLabel {
        /// The file name or `inline`.
        file: String,
        /// The 1-based line (or sample) number.
        row: usize,
        /// The label as written.
        value: String,
        /// The exclusive bound on labels.
        max: u32,
    },
    /// The dataset has no samples, or the data is not a form we read.
    #[error("dataset {file}: {reason}")]
    Invalid {
        /// The file name or `inline`.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The validation fraction is not in `0 ≤ v < 1`.
    #[error("validation_split {value} is not in [0, 1)")]
    BadSplit {
        /// The fraction given.
        value: f64,
    },
}

/// Samples with their labels: `samples` holds `len() × sample_len()` f32 values, row-major,
/// each sample of `shape` (e.g. `[1, 28, 28]`); every label is below `classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    samples: Vec<f32>,
    labels: Vec<u32>,
    shape: Vec<usize>,
    classes: u32,
}

impl Dataset {
    /// Builds a dataset, checking that the samples fill `labels.len()` samples of `shape`
    /// exactly, that there is at least one, and that every label is below `classes`.
    pub fn new(
        file: &str,
        samples: Vec<f32>,
        labels: Vec<u32>,
        shape: Vec<usize>,
        classes: u32,
    ) -> Result<Self, DatasetError> {
        let invalid = |reason: String| DatasetError::Invalid {
            file: file.to_owned(),
            reason,
        };
        let sample_len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let sample_len = sample_len.ok_or_else(|| invalid(format!("shape {shape:?} overflows")))?;
        if labels.is_empty() || sample_len == 0 {
            return Err(invalid("no samples".into()));
        }
        if labels.len().checked_mul(sample_len) != Some(samples.len()) {
            return Err(invalid(format!(
                "{} values do not make {} samples of shape {shape:?}",
                samples.len(),
                labels.len()
            )));
        }
        if classes == 0 || classes > MAX_CLASSES {
            return Err(invalid(format!(
                "{classes} classes is not in 1..={MAX_CLASSES}"
            )));
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(DatasetError::BadLabel {
                file: file.to_owned(),
                row: row + 1,
                value: label.to_string(),
                max: classes,
            });
        }
        Ok(Self {
            samples,
            labels,
            shape,
            classes,
        })
    }

    /// The number of samples (at least one).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: a dataset holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The values in one sample (the product of the shape).
    pub fn sample_len(&self) -> usize {
        self.samples.len() / self.labels.len()
    }

    /// All sample values, row-major.
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// Sample `i`'s values. Panics if `i >= len()`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.samples[i * n..(i + 1) * n]
    }

    /// All labels, one per sample.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// One sample's shape, e.g. `[1, 28, 28]` or `[64]` for CSV features.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of classes: labels are `0..classes`.
    pub fn classes(&self) -> u32 {
        self.classes
    }

    /// Takes the samples at `order` (indices below `len()`), in that order, keeping the
    /// shape and class count. Panics on an index out of range.
    pub(crate) fn gather(&self, order: &[usize]) -> Dataset {
        let n = self.sample_len();
        let mut samples = Vec::with_capacity(order.len() * n);
        let mut labels = Vec::with_capacity(order.len());
        for &i in order {
            samples.extend_from_slice(&self.samples[i * n..(i + 1) * n]);
            labels.push(self.labels[i]);
        }
        Dataset {
            samples,
            labels,
            shape: self.shape.clone(),
            classes: self.classes,
        }
    }
}

/// A long value shortened for an error message.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Where the tests find the real datasets: the installed Debian package and the models
    //! dir that `scripts/fetch-models.py` fills (same env vars as `tests/src/lib.rs`).
    use std::path::PathBuf;

    /// `$CYXWIZ_MODELS_DIR`, else `$CYXWIZ_DATA_DIR/models`, else
    /// `~/.cyxwiz/server-node/models`.
    pub fn models_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("CYXWIZ_MODELS_DIR") {
            return PathBuf::from(dir);
        }
        let data = std::env::var_os("CYXWIZ_DATA_DIR").map(PathBuf::from);
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        data.unwrap_or_else(|| home.join(".cyxwiz/server-node"))
            .join("models")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_shape_labels_and_classes() {
        let ok = Dataset::new("t", vec![0.0; 8], vec![0, 1], vec![2, 2], 2).unwrap();
        assert_eq!((ok.len(), ok.sample_len(), ok.classes()), (2, 4, 2));
        assert_eq!(ok.sample(1), &[0.0; 4]);
        let short = Dataset::new("t", vec![0.0; 7], vec![0, 1], vec![2, 2], 2);
        assert!(
            matches!(short, Err(DatasetError::Invalid { .. })),
            "{short:?}"
        );
        let label = Dataset::new("t", vec![0.0; 8], vec![0, 2], vec![2, 2], 2);
        assert!(
            matches!(label, Err(DatasetError::BadLabel { row: 2, .. })),
            "{label:?}"
        );
        let empty = Dataset::new("t", vec![], vec![], vec![2, 2], 2);
        assert!(
            matches!(empty, Err(DatasetError::Invalid { .. })),
            "{empty:?}"
        );
    }

    #[test]
    fn shorten_keeps_short_and_cuts_long() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"x".repeat(100)).chars().count(), 41);
    }
}
