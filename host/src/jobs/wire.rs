//! Network jobs as the protocol states them: a `cyxwiz.protocol.JobConfig` (from `AssignJob`,
//! `SendJob`, `StartNewJob` or `new_job_config`) plus optional inline dataset bytes, turned
//! into our [`JobRequest`] under the node's policy ([`WirePolicy`]).
//!
//! - `model_definition`: the Engine's node graph or our plain form, as the graph parser takes
//!   them (checked later, against the dataset's shape, by [`super::Jobs::submit`]).
//! - `dataset_uri`: `builtin://…`, `file://…` (only under `[jobs] dataset_dirs`, checked when
//!   loaded) or `remote://engine` (the Engine serves batches over the training stream; passed
//!   through unchanged). Inline bytes win over the URI (the URI is then noted as ignored).
//! - `epochs`, `batch_size`: 0 means the default; negative values are refused.
//! - `hyperparameters` (every value a string; the central server JSON-stringifies numbers):
//!   `learning_rate` (or `lr`), `validation_split`, `seed`, `label_column`; each value parsed
//!   and bounded, errors name the key. Other keys are ignored and listed in
//!   [`WireJob::notes`] for the job's log.
//! - `required_device`: CPU or unset → `cpu`; CUDA → `cuda` on a node with a GPU, else per
//!   `[jobs] cuda_jobs_on_cpu` (`refuse`, the default, refuses naming the key; `run_on_cpu`
//!   runs it on `cpu`); OpenCL, Metal and Vulkan are refused.

use cyxwiz_proto::protocol::{DeviceType, JobConfig as WireConfig};

use super::error::JobError;
use super::request::JobRequest;

pub use super::request::REMOTE_ENGINE;

/// The most hyperparameters a job may carry.
pub const MAX_HYPERPARAMETERS: usize = 256;
/// The longest hyperparameter key or value, in bytes.
pub const MAX_HYPERPARAMETER_LEN: usize = 4096;

/// What the node's policy says about network jobs' devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePolicy {
    /// The node has a CUDA GPU.
    pub has_gpu: bool,
    /// `[jobs] cuda_jobs_on_cpu`: `refuse` or `run_on_cpu`.
    pub cuda_jobs_on_cpu: String,
}

impl WirePolicy {
    /// The policy `config` gives for a node with or without a GPU.
    pub fn for_config(config: &crate::config::Config, has_gpu: bool) -> Self {
        Self {
            has_gpu,
            cuda_jobs_on_cpu: config.jobs.cuda_jobs_on_cpu.clone(),
        }
    }
}

/// A converted network job: the request to submit and the lines for its log (ignored keys,
/// the device chosen by policy).
#[derive(Debug, Clone, PartialEq)]
pub struct WireJob {
    /// What to hand to [`super::Jobs::submit`].
    pub request: JobRequest,
    /// Remarks for the job's log.
    pub notes: Vec<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> JobError {
    JobError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// At most 40 characters of `s`, for error messages.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Parses a hyperparameter's value: trimmed, and a JSON string's quotes removed.
fn value(raw: &str) -> &str {
    let t = raw.trim();
    t.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(t)
}

fn parse_f64(key: &str, raw: &str) -> Result<f64, JobError> {
    value(raw)
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            invalid(
                &format!("hyperparameters.{key}"),
                format!("{} is not a number", shown(raw)),
            )
        })
}

/// Converts a protocol job (and its inline dataset bytes, if any) into a [`JobRequest`].
pub fn job_request(
    config: &WireConfig,
    inline: Option<Vec<u8>>,
    policy: &WirePolicy,
) -> Result<WireJob, JobError> {
    let mut notes = Vec::new();
    let graph = config.model_definition.trim();
    if graph.is_empty() {
        return Err(invalid("model_definition", "is empty"));
    }
    let inline = inline.filter(|b| !b.is_empty());
    let uri = config.dataset_uri.trim();
    let dataset = match (&inline, uri.is_empty()) {
        (Some(_), false) => {
            notes.push(format!(
                "dataset_uri {} ignored: the job carries its dataset inline",
                shown(uri)
            ));
            None
        }
        (Some(_), true) => None,
        (None, true) => {
            return Err(invalid(
                "dataset_uri",
                "is empty and the job carries no inline dataset",
            ))
        }
        (None, false) => Some(uri.to_owned()),
    };
    let epochs = match config.epochs {
        0 => None,
        n => Some(u32::try_from(n).map_err(|_| invalid("epochs", format!("{n} is negative")))?),
    };
    let batch_size = match config.batch_size {
        0 => None,
        n => Some(u32::try_from(n).map_err(|_| invalid("batch_size", format!("{n} is negative")))?),
    };
    let device = device(config.required_device, policy, &mut notes)?;
    let mut request = JobRequest {
        graph: graph.to_owned(),
        dataset,
        inline_dataset: inline,
        label_column: None,
        epochs,
        batch_size,
        learning_rate: None,
        validation_split: None,
        seed: None,
        device: Some(device),
        backend: None,
    };
    hyperparameters(config, &mut request, &mut notes)?;
    Ok(WireJob { request, notes })
}

/// The device a job runs on, by its `required_device` and the policy.
fn device(required: i32, policy: &WirePolicy, notes: &mut Vec<String>) -> Result<String, JobError> {
    match DeviceType::try_from(required) {
        Ok(DeviceType::DeviceUnknown | DeviceType::DeviceCpu) => Ok("cpu".into()),
        Ok(DeviceType::DeviceCuda) if policy.has_gpu => Ok("cuda".into()),
        Ok(DeviceType::DeviceCuda) => match policy.cuda_jobs_on_cpu.as_str() {
            "run_on_cpu" => {
                notes.push(
                    "required_device DEVICE_CUDA: this node has no GPU and runs the job on the \
                     CPU ([jobs] cuda_jobs_on_cpu = \"run_on_cpu\")"
                        .into(),
                );
                Ok("cpu".into())
            }
            _ => Err(invalid(
                "required_device",
                "the job requires a CUDA GPU and this node has none ([jobs] cuda_jobs_on_cpu = \
                 \"refuse\"; set it to \"run_on_cpu\" to train such jobs on the CPU)",
            )),
        },
        Ok(other) => Err(invalid(
            "required_device",
            format!(
                "the job requires a {} device; this node offers CPU and CUDA only",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(invalid(
            "required_device",
            format!("{required} is not a device type"),
        )),
    }
}

/// Reads the hyperparameters the node knows into `request`; notes the others.
fn hyperparameters(
    config: &WireConfig,
    request: &mut JobRequest,
    notes: &mut Vec<String>,
) -> Result<(), JobError> {
    let map = &config.hyperparameters;
    if map.len() > MAX_HYPERPARAMETERS {
        return Err(invalid(
            "hyperparameters",
            format!("{} keys; at most {MAX_HYPERPARAMETERS}", map.len()),
        ));
    }
    // A stable order for the notes.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut ignored = Vec::new();
    for key in keys {
        let raw = map.get(key).map_or("", String::as_str);
        if key.len() > MAX_HYPERPARAMETER_LEN || raw.len() > MAX_HYPERPARAMETER_LEN {
            return Err(invalid(
                &format!("hyperparameters.{}", shown(key)),
                format!("key or value longer than {MAX_HYPERPARAMETER_LEN} bytes"),
            ));
        }
        match key.as_str() {
            "learning_rate" | "lr" => {
                let lr = parse_f64(key, raw)?;
                if !(lr > 0.0 && lr <= 10.0) {
                    return Err(invalid(
                        &format!("hyperparameters.{key}"),
                        format!("{lr} is not in (0, 10]"),
                    ));
                }
                match request.learning_rate {
                    Some(other) if other != lr => {
                        return Err(invalid(
                            "hyperparameters.lr",
                            format!("{lr} differs from learning_rate {other}; give one"),
                        ))
                    }
                    _ => request.learning_rate = Some(lr),
                }
            }
            "validation_split" => {
                let v = parse_f64(key, raw)?;
                if !(0.0..0.9).contains(&v) {
                    return Err(invalid(
                        "hyperparameters.validation_split",
                        format!("{v} is not in [0, 0.9)"),
                    ));
                }
                request.validation_split = Some(v);
            }
            "seed" => {
                let seed = value(raw).parse::<u64>().map_err(|_| {
                    invalid(
                        "hyperparameters.seed",
                        format!("{} is not an integer in 0..2^64", shown(raw)),
                    )
                })?;
                request.seed = Some(seed);
            }
            "label_column" => {
                let column = value(raw);
                if column.is_empty() || column.len() > 256 || column.chars().any(char::is_control) {
                    return Err(invalid(
                        "hyperparameters.label_column",
                        "must be 1 to 256 printable characters",
                    ));
                }
                request.label_column = Some(column.to_owned());
            }
            _ => ignored.push(crate::audit::clean(key, 64)),
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "hyperparameters ignored (not used by this node): {}",
            ignored.join(", ")
        ));
    }
    Ok(())
}

/// Appends `notes` to job `id`'s `log.txt` (what [`job_request`] ignored or decided).
pub fn log_notes(jobs: &super::Jobs, id: &str, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    let Ok(path) = jobs.log_path(id) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let text: String = notes
        .iter()
        .map(|n| format!("{now:.3} {}\n", n.escape_debug()))
        .collect();
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = appended {
        tracing::warn!(job = id, error = %e, "cannot write the job's log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::request::DatasetRef;

    /// PROTOCOL.md's Engine example (Fashion-MNIST MLP).
    const ENGINE_MLP: &str = r#"{"version":"1.0","framework":0,"nodes":[{"id":1,"type":77,"name":"Dataset Input","parameters":{"dataset_name":"fashion","split":"train"}},
{"id":2,"type":15,"name":"Flatten","parameters":{}},{"id":3,"type":0,"name":"Dense (128)","parameters":{"units":"128"}},
{"id":4,"type":29,"name":"ReLU","parameters":{}},{"id":5,"type":14,"name":"Dropout","parameters":{"rate":"0.2"}},
{"id":6,"type":0,"name":"Dense (10)","parameters":{"units":"10"}},{"id":7,"type":39,"name":"Softmax","parameters":{}},
{"id":8,"type":52,"name":"CrossEntropyLoss","parameters":{"reduction":"mean"}},{"id":9,"type":60,"name":"Adam","parameters":{"learning_rate":"0.001"}}],
"links":[{"id":1,"from_node":1,"from_pin_index":0,"to_node":2,"to_pin_index":0},{"id":2,"from_node":2,"to_node":3},{"id":3,"from_node":3,"to_node":4},
{"id":4,"from_node":4,"to_node":5},{"id":5,"from_node":5,"to_node":6},{"id":6,"from_node":6,"to_node":7},
{"id":7,"from_node":7,"to_node":8,"to_pin_index":0},{"id":8,"from_node":1,"from_pin_index":1,"to_node":8,"to_pin_index":1},{"id":9,"from_node":8,"to_node":9}]}"#;

    fn cpu_node() -> WirePolicy {
        WirePolicy {
            has_gpu: false,
            cuda_jobs_on_cpu: "refuse".into(),
        }
    }

    fn engine_job() -> WireConfig {
        WireConfig {
            job_id: "0b6f3e1c-7a52-4a55-9d1f-3b1f0d1c2e3f".into(),
            job_type: 1,
            model_definition: ENGINE_MLP.into(),
            dataset_uri: REMOTE_ENGINE.into(),
            batch_size: 64,
            epochs: 2,
            required_device: DeviceType::DeviceCpu as i32,
            hyperparameters: [
                ("learning_rate".to_string(), "0.002".to_string()),
                ("validation_split".to_string(), "0.2".to_string()),
                ("seed".to_string(), "7".to_string()),
                ("optimizer".to_string(), "adam".to_string()),
                ("momentum".to_string(), "0.9".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }

    fn field_of(err: &JobError) -> &str {
        match err {
            JobError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn the_engine_example_becomes_a_request_that_validates_and_parses() {
        let wire = job_request(&engine_job(), None, &cpu_node()).unwrap();
        let r = &wire.request;
        assert_eq!(r.dataset.as_deref(), Some(REMOTE_ENGINE));
        assert_eq!((r.epochs, r.batch_size), (Some(2), Some(64)));
        assert_eq!(r.learning_rate, Some(0.002));
        assert_eq!(r.validation_split, Some(0.2));
        assert_eq!(r.seed, Some(7));
        assert_eq!(r.device.as_deref(), Some("cpu"));
        assert_eq!(
            wire.notes,
            ["hyperparameters ignored (not used by this node): momentum, optimizer"]
        );
        let config = r.validate("train-candle", "p2p").unwrap();
        assert_ne!(config.dataset, DatasetRef::Inline);
        let shape = crate::jobs::graph::DatasetShape {
            sample: vec![1, 28, 28],
            classes: 10,
        };
        let spec =
            crate::jobs::graph::parse_model_definition(&r.graph, &shape, r.learning_rate).unwrap();
        assert_eq!(spec.optimizer.learning_rate, 0.002, "the job's rate wins");
        assert!(spec.softmax_folded);
    }

    #[test]
    fn zero_epochs_and_batch_mean_the_defaults_and_inline_bytes_win() {
        let job = WireConfig {
            epochs: 0,
            batch_size: 0,
            hyperparameters: Default::default(),
            dataset_uri: "file://csv/C:/Users/me/data.csv".into(),
            ..engine_job()
        };
        let wire = job_request(&job, Some(b"a,label\n1,0\n".to_vec()), &cpu_node()).unwrap();
        assert_eq!((wire.request.epochs, wire.request.batch_size), (None, None));
        assert_eq!(wire.request.dataset, None);
        assert!(wire.request.inline_dataset.is_some());
        assert!(wire.notes[0].contains("dataset_uri"), "{:?}", wire.notes);
        let config = wire.request.validate("train-candle", "central").unwrap();
        assert_eq!((config.epochs, config.batch_size), (1, 32));
        assert_eq!(config.dataset, DatasetRef::Inline);
        // Empty inline bytes are no dataset.
        let none = WireConfig {
            dataset_uri: String::new(),
            ..engine_job()
        };
        let err = job_request(&none, Some(Vec::new()), &cpu_node()).unwrap_err();
        assert_eq!(field_of(&err), "dataset_uri");
    }

    #[test]
    fn cuda_follows_the_policy_and_names_the_key() {
        let cuda = WireConfig {
            required_device: DeviceType::DeviceCuda as i32,
            ..engine_job()
        };
        let err = job_request(&cuda, None, &cpu_node()).unwrap_err();
        assert_eq!(field_of(&err), "required_device");
        assert!(err.to_string().contains("cuda_jobs_on_cpu"), "{err}");
        let on_cpu = WirePolicy {
            has_gpu: false,
            cuda_jobs_on_cpu: "run_on_cpu".into(),
        };
        let wire = job_request(&cuda, None, &on_cpu).unwrap();
        assert_eq!(wire.request.device.as_deref(), Some("cpu"));
        assert!(wire.notes.iter().any(|n| n.contains("run_on_cpu")));
        let gpu = WirePolicy {
            has_gpu: true,
            cuda_jobs_on_cpu: "refuse".into(),
        };
        let wire = job_request(&cuda, None, &gpu).unwrap();
        assert_eq!(wire.request.device.as_deref(), Some("cuda"));
        assert_eq!(
            wire.request.validate("x", "central").unwrap().device,
            "cuda:0"
        );
        let metal = WireConfig {
            required_device: DeviceType::DeviceMetal as i32,
            ..engine_job()
        };
        let err = job_request(&metal, None, &gpu).unwrap_err();
        assert!(err.to_string().contains("DEVICE_METAL"), "{err}");
        let unknown = WireConfig {
            required_device: 99,
            ..engine_job()
        };
        assert_eq!(
            field_of(&job_request(&unknown, None, &gpu).unwrap_err()),
            "required_device"
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let with = |k: &str, v: &str| WireConfig {
            hyperparameters: [(k.to_string(), v.to_string())].into_iter().collect(),
            ..engine_job()
        };
        for (job, name) in [
            (with("lr", "fast"), "hyperparameters.lr"),
            (with("learning_rate", "0"), "hyperparameters.learning_rate"),
            (
                with("learning_rate", "NaN"),
                "hyperparameters.learning_rate",
            ),
            (
                with("validation_split", "0.95"),
                "hyperparameters.validation_split",
            ),
            (with("seed", "-1"), "hyperparameters.seed"),
            (with("label_column", ""), "hyperparameters.label_column"),
            (with("x", &"y".repeat(5000)), "hyperparameters.\"x\""),
            (
                WireConfig {
                    epochs: -1,
                    ..engine_job()
                },
                "epochs",
            ),
            (
                WireConfig {
                    batch_size: -5,
                    ..engine_job()
                },
                "batch_size",
            ),
            (
                WireConfig {
                    model_definition: "  ".into(),
                    ..engine_job()
                },
                "model_definition",
            ),
        ] {
            let err = job_request(&job, None, &cpu_node()).unwrap_err();
            assert_eq!(field_of(&err), name, "{err}");
        }
        // Quoted (JSON-stringified) values and the `lr` alias are read.
        let quoted = with("lr", "\"0.01\"");
        let wire = job_request(&quoted, None, &cpu_node()).unwrap();
        assert_eq!(wire.request.learning_rate, Some(0.01));
        // Both spellings must agree.
        let both = WireConfig {
            hyperparameters: [
                ("lr".to_string(), "0.01".to_string()),
                ("learning_rate".to_string(), "0.02".to_string()),
            ]
            .into_iter()
            .collect(),
            ..engine_job()
        };
        assert_eq!(
            field_of(&job_request(&both, None, &cpu_node()).unwrap_err()),
            "hyperparameters.lr"
        );
    }
}
