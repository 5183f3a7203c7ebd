//! Dataset sources: parses a dataset URI (`builtin://fashion-mnist`, `builtin://digits`,
//! `file:///abs/path`) or takes inline bytes, finds and reads the files (only inside the
//! configured dataset directories for `file://`), unpacks gzip with a bound, and hands the
//! bytes to the IDX or CSV reader.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::csv::{self, CsvOptions};
use super::{idx, Dataset, DatasetError};

/// Where the Debian package `dataset-fashion-mnist` installs its IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The digits CSV under the models dir, put there by `scripts/fetch-models.py`.
pub const DIGITS_FILE: &str = "datasets/digits.csv.gz";
/// The largest dataset file we read, compressed or not, and the largest it may unpack to.
pub const MAX_FILE_BYTES: u64 = 320 * 1024 * 1024;

/// Node-level settings for finding datasets.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// `[jobs] dataset_dirs`: the only directories `file://` may read from.
    pub dataset_dirs: Vec<PathBuf>,
    /// The models dir, holding `datasets/digits.csv.gz`.
    pub models_dir: PathBuf,
    /// Where Fashion-MNIST's IDX files are (normally [`FASHION_MNIST_DIR`]).
    pub fashion_mnist_dir: PathBuf,
    /// The most bytes an inline dataset may have.
    pub inline_limit: usize,
}

impl SourceConfig {
    /// Settings with Fashion-MNIST at its Debian location.
    pub fn new(models_dir: PathBuf, dataset_dirs: Vec<PathBuf>, inline_limit: usize) -> Self {
        Self {
            dataset_dirs,
            models_dir,
            fashion_mnist_dir: PathBuf::from(FASHION_MNIST_DIR),
            inline_limit,
        }
    }
}

/// A dataset a job asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// `builtin://fashion-mnist`: 60,000 training and 10,000 test images, 28×28, 10 classes.
    FashionMnist,
    /// `builtin://digits`: 1,797 8×8 digit images (features 0..16 scaled to [0, 1]).
    Digits,
    /// `file:///abs/path`: a CSV file (`.csv` or `.csv.gz`) or an IDX images file whose
    /// labels file has the same name with `labels` for `images` (and `idx1` for `idx3`).
    File(PathBuf),
    /// Inline bytes (optionally gzipped; the cap holds for both the bytes and what they unpack
    /// to): CSV with a header, or an images IDX array immediately followed by a labels IDX
    /// array.
    Inline(Vec<u8>),
}

impl DatasetSource {
    /// Parses a dataset URI. Inline data has no URI: build [`DatasetSource::Inline`].
    pub fn parse(uri: &str) -> Result<Self, DatasetError> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(DatasetError::UnknownScheme {
                uri: uri.to_owned(),
                scheme: String::new(),
            });
        };
        match scheme {
            "builtin" => match rest {
                "fashion-mnist" => Ok(Self::FashionMnist),
                "digits" => Ok(Self::Digits),
                other => Err(DatasetError::UnknownBuiltin {
                    name: other.to_owned(),
                }),
            },
            "file" => Ok(Self::File(PathBuf::from(rest))),
            other => Err(DatasetError::UnknownScheme {
                uri: uri.to_owned(),
                scheme: other.to_owned(),
            }),
        }
    }
}

/// A loaded dataset: what to train (and validate) on, and the separate test set when the
/// source has one (Fashion-MNIST's `t10k` files).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDataset {
    /// The training samples (split into train/validation by [`Dataset::split`]).
    pub train: Dataset,
    /// The source's own test set, if it has one.
    pub test: Option<Dataset>,
}

/// Loads `source`. `label_column` names a CSV's label column (default `label`, else
/// `target`); IDX files and the built-in datasets have their labels and ignore it.
pub fn load(
    source: &DatasetSource,
    config: &SourceConfig,
    label_column: Option<&str>,
) -> Result<LoadedDataset, DatasetError> {
    let csv_options = CsvOptions {
        label_column: label_column.map(str::to_owned),
        ..CsvOptions::default()
    };
    match source {
        DatasetSource::FashionMnist => {
            let dir = &config.fashion_mnist_dir;
            let hint = " (install the Debian package dataset-fashion-mnist: scripts/install-deps)";
            let pair = |prefix: &str| {
                let images = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
                let labels = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
                read_idx_pair(&images, &labels, hint)
            };
            Ok(LoadedDataset {
                train: pair("train")?,
                test: Some(pair("t10k")?),
            })
        }
        DatasetSource::Digits => {
            let path = config.models_dir.join(DIGITS_FILE);
            let bytes = read_file(&path, " (run scripts/fetch-models.py)")?;
            let options = CsvOptions {
                has_header: false,
                label_column: None,
                scale: 1.0 / 16.0,
                shape: Some(vec![1, 8, 8]),
            };
            let train = csv::read(&path.display().to_string(), &bytes, &options)?;
            Ok(LoadedDataset { train, test: None })
        }
        DatasetSource::File(path) => {
            let path = confine(path, &config.dataset_dirs)?;
            let name = path.display().to_string();
            let bytes = read_file(&path, "")?;
            let train = if idx::looks_like_idx(&bytes) {
                let labels = confine(&labels_path(&path)?, &config.dataset_dirs)?;
                let label_bytes = read_file(&labels, "")?;
                idx::read_pair(&name, &bytes, &labels.display().to_string(), &label_bytes)?
            } else {
                csv::read(&name, &bytes, &csv_options)?
            };
            Ok(LoadedDataset { train, test: None })
        }
        DatasetSource::Inline(raw) => {
            if raw.len() > config.inline_limit {
                return Err(DatasetError::InlineTooLarge {
                    size: raw.len(),
                    limit: config.inline_limit,
                });
            }
            let unpacked;
            let bytes: &[u8] = if is_gzip(raw) {
                unpacked = gunzip("inline", raw, config.inline_limit as u64)?;
                &unpacked
            } else {
                raw
            };
            let train = if idx::looks_like_idx(bytes) {
                idx::read_concatenated("inline", bytes)?
            } else {
                csv::read("inline", bytes, &csv_options)?
            };
            Ok(LoadedDataset { train, test: None })
        }
    }
}

/// Reads an images IDX file and its labels IDX file.
fn read_idx_pair(images: &Path, labels: &Path, hint: &str) -> Result<Dataset, DatasetError> {
    let image_bytes = read_file(images, hint)?;
    let label_bytes = read_file(labels, hint)?;
    idx::read_pair(
        &images.display().to_string(),
        &image_bytes,
        &labels.display().to_string(),
        &label_bytes,
    )
}

/// The labels file beside an IDX images file: `images` → `labels`, `idx3` → `idx1`.
fn labels_path(images: &Path) -> Result<PathBuf, DatasetError> {
    let name = images.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains("images") {
        return Err(DatasetError::Invalid {
            file: images.display().to_string(),
            reason: "an IDX file is read as images, and its name must contain \"images\" so the \
                     labels file (\"labels\" in its place) can be found"
                .into(),
        });
    }
    Ok(images.with_file_name(name.replace("images", "labels").replace("idx3", "idx1")))
}

/// `path` resolved (symlinks followed) if it lies inside one of `dirs`; refuses relative
/// paths, `..`, paths outside the dirs (before looking at the file, so nothing outside is
/// probed) and symlinks that lead out of them.
fn confine(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, DatasetError> {
    let outside = |reason: String| DatasetError::OutsideDirs {
        path: path.to_owned(),
        reason,
    };
    if !path.is_absolute() {
        return Err(outside("not an absolute path".into()));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(outside("\"..\" is not allowed".into()));
    }
    let roots: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
    if roots.is_empty() {
        let configured: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(outside(format!(
            "no dataset directory exists; [jobs] dataset_dirs = [{}]",
            configured.join(", ")
        )));
    }
    let under = |p: &Path| roots.iter().chain(dirs).any(|r| p.starts_with(r));
    if !under(path) {
        return Err(outside("not under any of [jobs] dataset_dirs".into()));
    }
    let real = path
        .canonicalize()
        .map_err(|source| io_error(path, source, ""))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(outside(format!("a symlink leads to {}", real.display())));
    }
    Ok(real)
}

fn io_error(path: &Path, source: std::io::Error, hint: &str) -> DatasetError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DatasetError::Missing {
            path: path.to_owned(),
            hint: hint.to_owned(),
        }
    } else {
        DatasetError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A file's bytes, gunzipped when they start with the gzip magic; bounded before reading.
fn read_file(path: &Path, hint: &str) -> Result<Vec<u8>, DatasetError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e, hint))?;
    if !meta.is_file() {
        return Err(DatasetError::Invalid {
            file: name,
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(DatasetError::TooLarge {
            file: name,
            what: "the file".into(),
            got: meta.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e, hint))?;
    if is_gzip(&bytes) {
        gunzip(&name, &bytes, MAX_FILE_BYTES)
    } else {
        Ok(bytes)
    }
}

/// Whether `bytes` start with the gzip magic.
fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Gzip `bytes` unpacked, refused past `limit` bytes (so a small gzip bomb cannot fill
/// memory): [`MAX_FILE_BYTES`] for files, the inline cap for inline data.
fn gunzip(file: &str, bytes: &[u8], limit: u64) -> Result<Vec<u8>, DatasetError> {
    // The trailer's ISIZE (size mod 2^32) sizes the buffer; a lie only costs a regrow.
    let mut out = Vec::new();
    if let Some(tail) = bytes.len().checked_sub(4).map(|at| &bytes[at..]) {
        let size = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        out.reserve(u64::from(size).min(limit) as usize);
    }
    let mut decoder = flate2::read::GzDecoder::new(bytes).take(limit.saturating_add(1));
    decoder.read_to_end(&mut out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DatasetError::Truncated {
                file: file.to_owned(),
                what: "the gzip stream ends early".into(),
            }
        } else {
            DatasetError::Invalid {
                file: file.to_owned(),
                reason: format!("bad gzip data: {e}"),
            }
        }
    })?;
    if out.len() as u64 > limit {
        return Err(DatasetError::TooLarge {
            file: file.to_owned(),
            what: "the unpacked data".into(),
            got: out.len() as u64,
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
