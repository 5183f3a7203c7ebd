//! What a caller submits ([`JobRequest`]) and the validated, persisted form of it
//! ([`JobConfig`], the job's `config.json`): hyperparameters and their bounds, the dataset
//! reference, the device and the backend.

use serde::{Deserialize, Serialize};

use super::error::JobError;

/// The most epochs a job may ask for.
pub const MAX_EPOCHS: u32 = 10_000;
/// The largest batch.
pub const MAX_BATCH_SIZE: u32 = 65_536;
/// The default share of the training samples held out for validation.
pub const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

/// Where a job's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetRef {
    /// `builtin://NAME` or `file:///abs/path`.
    Uri(String),
    /// Bytes sent with the job (CSV or IDX, optionally gzipped), stored as `dataset.bin` in
    /// the job's directory.
    Inline,
    /// `remote://engine`: the Engine keeps the data and serves batches over the P2P stream.
    Remote,
}

/// The dataset URI of data the Engine serves over the training stream.
pub const REMOTE_ENGINE: &str = "remote://engine";

/// Who sent a job: `local` (CLI, HTTP), `central` (AssignJob) or `p2p` (an Engine's
/// reservation), with the reservation and the sender's address for network jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// `local`, `central` or `p2p`.
    pub kind: &'static str,
    /// The P2P reservation id.
    pub reservation: Option<String>,
    /// The sender's address.
    pub peer: Option<String>,
}

impl Origin {
    /// A job submitted on this machine.
    pub fn local() -> Self {
        Self {
            kind: "local",
            ..Self::default()
        }
    }

    /// Whether the job came from the network.
    pub fn is_network(&self) -> bool {
        self.kind != "local"
    }
}

/// A job as a caller submits it (the CLI, `POST /v1/jobs`, later the network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The model: an Engine node graph or the plain form, as JSON text.
    pub graph: String,
    /// `builtin://fashion-mnist`, `builtin://digits` or `file:///…` (omit with inline data).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Inline dataset bytes (not from JSON: the HTTP API takes them base64-encoded).
    #[serde(skip)]
    pub inline_dataset: Option<Vec<u8>>,
    /// A CSV's label column (default `label`, else `target`).
    #[serde(default)]
    pub label_column: Option<String>,
    /// Epochs (default 1).
    #[serde(default)]
    pub epochs: Option<u32>,
    /// Batch size (default 32).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Learning rate; overrides the graph's optimizer.
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Held-out share for validation (default 0.1).
    #[serde(default)]
    pub validation_split: Option<f64>,
    /// Seed for initialisation, shuffling and dropout (default: random, recorded).
    #[serde(default)]
    pub seed: Option<u64>,
    /// `cpu` (default) or `cuda` / `cuda:N`.
    #[serde(default)]
    pub device: Option<String>,
    /// The training plugin (default `[jobs] default_backend`).
    #[serde(default)]
    pub backend: Option<String>,
}

/// A validated job: what `config.json` holds and what the executor runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    /// The dataset.
    pub dataset: DatasetRef,
    /// A CSV's label column.
    pub label_column: Option<String>,
    /// Epochs.
    pub epochs: u32,
    /// Batch size.
    pub batch_size: u32,
    /// The job's learning rate, if it set one.
    pub learning_rate: Option<f64>,
    /// Held-out share.
    pub validation_split: f64,
    /// The seed.
    pub seed: u64,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The training plugin.
    pub backend: String,
    /// Who submitted it: `local`, or `network` for jobs from the central server or an Engine.
    pub origin: String,
}

fn field(name: &str, message: impl Into<String>) -> JobError {
    JobError::Invalid {
        field: name.to_owned(),
        message: message.into(),
    }
}

impl JobRequest {
    /// Checks the hyperparameters and fills defaults; the graph and dataset are checked by
    /// the executor (they need the dataset's shape).
    pub fn validate(&self, default_backend: &str, origin: &str) -> Result<JobConfig, JobError> {
        let epochs = self.epochs.unwrap_or(1);
        if !(1..=MAX_EPOCHS).contains(&epochs) {
            return Err(field(
                "epochs",
                format!("{epochs} is not in 1..={MAX_EPOCHS}"),
            ));
        }
        let batch_size = self.batch_size.unwrap_or(32);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(field(
                "batch_size",
                format!("{batch_size} is not in 1..={MAX_BATCH_SIZE}"),
            ));
        }
        if let Some(lr) = self.learning_rate {
            if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
                return Err(field("learning_rate", format!("{lr} is not in (0, 10]")));
            }
        }
        let validation_split = self.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
        if !(validation_split.is_finite() && (0.0..0.9).contains(&validation_split)) {
            return Err(field(
                "validation_split",
                format!("{validation_split} is not in [0, 0.9)"),
            ));
        }
        let device = parse_device(self.device.as_deref().unwrap_or("cpu"))?;
        let dataset = match (&self.dataset, &self.inline_dataset) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "dataset",
                    "give a dataset URI or inline data, not both",
                ))
            }
            (None, None) => return Err(field("dataset", "a dataset is required")),
            (Some(uri), None) => {
                if uri.len() > 4096 || uri.chars().any(char::is_control) {
                    return Err(field(
                        "dataset",
                        "the URI is too long or has control characters",
                    ));
                }
                if uri == REMOTE_ENGINE {
                    DatasetRef::Remote
                } else {
                    DatasetRef::Uri(uri.clone())
                }
            }
            (None, Some(_)) => DatasetRef::Inline,
        };
        if let Some(column) = &self.label_column {
            if column.is_empty() || column.len() > 256 {
                return Err(field("label_column", "must be 1 to 256 characters"));
            }
        }
        let backend = self
            .backend
            .clone()
            .unwrap_or_else(|| default_backend.to_owned());
        if backend.is_empty() || backend.len() > 64 {
            return Err(field("backend", "must be a plugin name"));
        }
        let seed = self.seed.unwrap_or_else(random_seed);
        Ok(JobConfig {
            dataset,
            label_column: self.label_column.clone(),
            epochs,
            batch_size,
            learning_rate: self.learning_rate,
            validation_split,
            seed,
            device,
            backend,
            origin: origin.to_owned(),
        })
    }
}

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
fn parse_device(s: &str) -> Result<String, JobError> {
    match s {
        "cpu" => Ok("cpu".into()),
        "cuda" | "gpu" => Ok("cuda:0".into()),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) if n < 64 => Ok(format!("cuda:{n}")),
            _ => Err(field(
                "device",
                format!(
                    "{:?} is not cpu, cuda or cuda:N",
                    other.chars().take(40).collect::<String>()
                ),
            )),
        },
    }
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos;
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JobRequest {
        JobRequest {
            graph: "{}".into(),
            dataset: Some("builtin://digits".into()),
            inline_dataset: None,
            label_column: None,
            epochs: Some(3),
            batch_size: Some(64),
            learning_rate: None,
            validation_split: None,
            seed: Some(1),
            device: None,
            backend: None,
        }
    }

    #[test]
    fn defaults_fill_and_absurd_values_name_their_field() {
        let c = request().validate("train-candle", "local").unwrap();
        assert_eq!((c.epochs, c.batch_size, c.device.as_str()), (3, 64, "cpu"));
        assert_eq!(c.backend, "train-candle");
        for (edit, name) in [
            (
                JobRequest {
                    epochs: Some(0),
                    ..request()
                },
                "epochs",
            ),
            (
                JobRequest {
                    batch_size: Some(1 << 20),
                    ..request()
                },
                "batch_size",
            ),
            (
                JobRequest {
                    learning_rate: Some(f64::NAN),
                    ..request()
                },
                "learning_rate",
            ),
            (
                JobRequest {
                    learning_rate: Some(-1.0),
                    ..request()
                },
                "learning_rate",
            ),
            (
                JobRequest {
                    validation_split: Some(1.0),
                    ..request()
                },
                "validation_split",
            ),
            (
                JobRequest {
                    device: Some("tpu".into()),
                    ..request()
                },
                "device",
            ),
            (
                JobRequest {
                    dataset: None,
                    ..request()
                },
                "dataset",
            ),
        ] {
            let err = edit.validate("train-candle", "local").unwrap_err();
            assert!(
                matches!(&err, JobError::Invalid { field, .. } if field == name),
                "{name}: {err}"
            );
        }
        let cuda = JobRequest {
            device: Some("cuda".into()),
            ..request()
        };
        assert_eq!(cuda.validate("x", "local").unwrap().device, "cuda:0");
    }
}
