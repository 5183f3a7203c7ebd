//! `cyxwiz-node jobs submit|list|show|logs|cancel|pause|resume|weights`: training jobs of the
//! running node, through `DaemonService` on its control socket. `--json` prints the JobView
//! exactly as `GET /v1/jobs/{id}` returns it; following a job in a terminal shows a progress
//! bar ([`follow`]), plain lines otherwise.

use super::{print_table, runtime, table, with_node, Refused};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use cyxwiz_node::{
    config::Config,
    control::{self, client::Client},
    jobs::graph::MAX_DEFINITION_BYTES,
};
use cyxwiz_proto::daemon as pb;
use std::{
    io::{IsTerminal, Read, Write},
    path::{Path, PathBuf},
};

/// The largest inline dataset the CLI reads (the node's own cap is `[jobs]
/// max_inline_dataset_bytes`, at most 1 GiB).
const MAX_INLINE_FILE: u64 = 1 << 30;

/// `jobs submit` arguments.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The model definition: an Engine node-graph JSON file or the plain form (at most 1 MiB).
    #[arg(long, value_name = "FILE")]
    pub graph: PathBuf,
    /// builtin://fashion-mnist, builtin://digits, file:///PATH (inside [jobs] dataset_dirs),
    /// or @FILE to send FILE's bytes (CSV or IDX, optionally gzipped) with the job.
    #[arg(long, value_name = "URI")]
    pub dataset: String,
    /// Epochs (default 1).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Batch size (default 32).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Learning rate (default: the graph's optimizer's, else 0.001).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Share of the training samples held out for validation (default 0.1).
    #[arg(long)]
    pub validation_split: Option<f64>,
    /// Seed for initialisation, shuffling and dropout (default: random, recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu (default), cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// The training plugin (default: [jobs] default_backend).
    #[arg(long)]
    pub backend: Option<String>,
    /// A CSV dataset's label column (default `label`, else `target`).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Follow the job until it ends (progress on stderr; fails unless it succeeds).
    #[arg(long)]
    pub follow: bool,
}

/// `jobs` subcommands.
#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Submit a training job; prints its id.
    Submit(SubmitArgs),
    /// Jobs of the running node, newest first.
    List {
        /// Only jobs in this state (queued, preparing, running, paused, succeeded, failed,
        /// cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Most jobs listed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON (as `GET /v1/jobs`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job: state, progress, metrics, rate, ETA, weights, error.
    Show {
        /// The job id.
        id: String,
        /// Print JSON (as `GET /v1/jobs/{id}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A job's log; with --follow, new lines until the job ends.
    Logs {
        /// The job id.
        id: String,
        /// Keep printing new lines (with a progress bar in a terminal) until the job ends.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines (0: all).
        #[arg(long, default_value_t = 0)]
        tail: u32,
    },
    /// Cancel a job (a running one stops within 2 s; partial weights are kept).
    Cancel {
        /// The job id.
        id: String,
    },
    /// Pause a running job at its next step (it checkpoints first).
    Pause {
        /// The job id.
        id: String,
    },
    /// Resume a paused job.
    Resume {
        /// The job id.
        id: String,
    },
    /// Download a job's weights.safetensors, checked against its sha256.
    Weights {
        /// The job id.
        id: String,
        /// Where to write them (replaced atomically).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs a `jobs` subcommand.
pub fn run(config: &Config, command: JobsCommand) -> Result<()> {
    match command {
        JobsCommand::Submit(args) => submit(config, args),
        JobsCommand::List { state, limit, json } => list(config, state, limit, json),
        JobsCommand::Show { id, json } => show(config, id, json),
        JobsCommand::Logs { id, follow, tail } => logs(config, id, follow, tail),
        JobsCommand::Cancel { id } => steer(config, id, Steer::Cancel),
        JobsCommand::Pause { id } => steer(config, id, Steer::Pause),
        JobsCommand::Resume { id } => steer(config, id, Steer::Resume),
        JobsCommand::Weights { id, out } => weights(config, id, &out),
    }
}

/// Reads at most `max` bytes of `path`; more is an error naming `flag` and the bound.
fn read_capped(path: &Path, max: u64, flag: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("{flag} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{flag} {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{flag} {}: larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

fn submit(config: &Config, args: SubmitArgs) -> Result<()> {
    let graph = read_capped(&args.graph, MAX_DEFINITION_BYTES as u64, "--graph")?;
    let graph = String::from_utf8(graph)
        .map_err(|_| anyhow::anyhow!("--graph {}: not UTF-8 text", args.graph.display()))?;
    let (dataset, inline) = match args.dataset.strip_prefix('@') {
        Some(file) => (
            String::new(),
            read_capped(Path::new(file), MAX_INLINE_FILE, "--dataset @")?,
        ),
        None => (args.dataset, Vec::new()),
    };
    let request = pb::SubmitJobRequest {
        graph,
        dataset,
        inline_dataset: inline,
        label_column: args.label_column.unwrap_or_default(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        validation_split: args.validation_split,
        seed: args.seed,
        device: args.device.unwrap_or_default(),
        backend: args.backend.unwrap_or_default(),
    };
    let follow = args.follow;
    with_node(config, async |mut client| {
        let job = client
            .submit_job(request)
            .await?
            .into_inner()
            .job
            .unwrap_or_default();
        println!("{}", job.id);
        let _ = std::io::stdout().flush();
        if !follow {
            return Ok(None);
        }
        Ok::<_, Refused>(Some(
            follow::run(&mut client, &job.id, 0, follow::Out::Stderr).await?,
        ))
    })
    .and_then(|end| match end {
        Some(job) => ended_well(&job),
        None => Ok(()),
    })
}

/// A followed job's end as the exit status: success only if it succeeded.
fn ended_well(job: &pb::JobInfo) -> Result<()> {
    if job.state == "succeeded" {
        return Ok(());
    }
    let why = if job.error.is_empty() {
        String::new()
    } else {
        format!(": {}", job.error)
    };
    bail!("job {} {}{why}", job.id, job.state)
}

/// The JobView JSON of `job` (the node sends it as the HTTP API does).
fn json_of(job: &pb::JobInfo) -> &str {
    if job.json.is_empty() {
        "null"
    } else {
        &job.json
    }
}

fn list(config: &Config, state: Option<String>, limit: u32, json: bool) -> Result<()> {
    let request = pb::ListJobsRequest {
        include_completed: true,
        limit: i32::try_from(limit).unwrap_or(i32::MAX),
        state: state.unwrap_or_default(),
    };
    let jobs = with_node(config, async |mut client| {
        Ok::<_, Refused>(client.list_jobs(request).await?.into_inner().jobs)
    })?;
    if json {
        let items: Vec<&str> = jobs.iter().map(json_of).collect();
        println!("[{}]", items.join(","));
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    let mut out = table(&[
        "ID", "STATE", "ORIGIN", "PROGRESS", "EPOCH", "LOSS", "BACKEND", "DATASET", "CREATED",
    ]);
    for j in jobs {
        let view: serde_json::Value = serde_json::from_str(&j.json).unwrap_or_default();
        out.add_row([
            j.id.clone(),
            j.state.clone(),
            view["origin"].as_str().unwrap_or("-").to_owned(),
            format!("{:.0}%", f64::from(j.progress) * 100.0),
            format!("{}/{}", j.current_epoch, j.total_epochs),
            metric(&j, "loss"),
            j.backend.clone(),
            j.dataset.clone(),
            j.created_at.clone(),
        ]);
    }
    print_table(&out);
    Ok(())
}

/// A metric of the job's JSON, formatted, or `-`.
fn metric(job: &pb::JobInfo, name: &str) -> String {
    metrics(job)
        .get(name)
        .and_then(serde_json::Value::as_f64)
        .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn metrics(job: &pb::JobInfo) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&job.json)
        .ok()
        .and_then(|v| v.get("metrics").and_then(|m| m.as_object()).cloned())
        .unwrap_or_default()
}

/// Seconds as `1h02m03s`, `2m03s` or `3s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

fn show(config: &Config, id: String, json: bool) -> Result<()> {
    let job = with_node(config, async |mut client| {
        Ok::<_, Refused>(
            client
                .get_job(pb::GetJobRequest { job_id: id })
                .await?
                .into_inner()
                .job
                .unwrap_or_default(),
        )
    })?;
    if json {
        println!("{}", json_of(&job));
        return Ok(());
    }
    let view: serde_json::Value = serde_json::from_str(&job.json).unwrap_or_default();
    let text = |key: &str| match &view[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("id", job.id.clone()),
        ("state", job.state.clone()),
        (
            "progress",
            format!("{:.1}%", f64::from(job.progress) * 100.0),
        ),
        (
            "epoch",
            format!("{} of {}", job.current_epoch, job.total_epochs),
        ),
    ];
    if matches!(job.state.as_str(), "running" | "paused") && job.total_steps > 0 {
        rows.push(("step", format!("{} of {}", job.step, job.total_steps)));
    }
    let m = metrics(&job);
    if !m.is_empty() {
        let shown: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
            .collect();
        rows.push(("metrics", shown.join(", ")));
    }
    if job.state == "running" {
        rows.push(("samples/s", format!("{:.1}", job.samples_per_second)));
        if job.eta_seconds >= 0.0 {
            rows.push(("eta", duration(job.eta_seconds)));
        }
    }
    rows.push(("origin", text("origin")));
    if view["reservation"].is_string() {
        rows.push(("reservation", text("reservation")));
    }
    if view["peer"].is_string() {
        rows.push(("from", text("peer")));
    }
    rows.extend([
        ("backend", job.backend.clone()),
        ("device", text("device")),
        ("dataset", job.dataset.clone()),
        ("attempt", text("attempt")),
        ("created", job.created_at.clone()),
        ("started", text("started_at")),
        ("finished", text("finished_at")),
        (
            "run time",
            duration(view["run_seconds"].as_f64().unwrap_or(0.0)),
        ),
    ]);
    if !job.weights_sha256.is_empty() {
        rows.push((
            "weights",
            format!(
                "sha256 {} ({} bytes)",
                job.weights_sha256, job.weights_bytes
            ),
        ));
    }
    if !job.error.is_empty() {
        rows.push(("error", job.error.clone()));
    }
    rows.push(("directory", text("dir")));
    for (key, value) in rows {
        println!("{:<12} {value}", format!("{key}:"));
    }
    Ok(())
}

fn logs(config: &Config, id: String, follow: bool, tail: u32) -> Result<()> {
    let end = with_node(config, async |mut client| {
        if follow {
            return Ok::<_, Refused>(Some(
                follow::run(&mut client, &id, tail, follow::Out::Stdout).await?,
            ));
        }
        let request = pb::GetJobLogsRequest {
            job_id: id,
            tail,
            follow: false,
        };
        let mut stream = client.get_job_logs(request).await?.into_inner();
        while let Some(chunk) = stream.message().await? {
            for line in chunk.lines {
                println!("{line}");
            }
        }
        Ok(None)
    })?;
    // Following ends when the job does; how it ended is in the log, so the exit is 0.
    drop(end);
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Steer {
    Cancel,
    Pause,
    Resume,
}

fn steer(config: &Config, id: String, what: Steer) -> Result<()> {
    let job = with_node(config, async |mut client| {
        let job = match what {
            Steer::Cancel => {
                client
                    .cancel_job(pb::CancelJobRequest { job_id: id })
                    .await?
                    .into_inner()
                    .job
            }
            Steer::Pause => {
                client
                    .pause_job(pb::PauseJobRequest { job_id: id })
                    .await?
                    .into_inner()
                    .job
            }
            Steer::Resume => {
                client
                    .resume_job(pb::ResumeJobRequest { job_id: id })
                    .await?
                    .into_inner()
                    .job
            }
        };
        Ok::<_, Refused>(job.unwrap_or_default())
    })?;
    println!("{} {}", job.id, job.state);
    Ok(())
}

fn weights(config: &Config, id: String, out: &Path) -> Result<()> {
    let socket = control::socket_path(&config.data_dir);
    let (sha, size) = runtime()?.block_on(async {
        let client = control::client::connect(&socket).await?;
        download(client, id, out).await
    })?;
    println!("{sha} {size}");
    Ok(())
}

/// Streams the weights into a temporary file beside `out`, checks size and sha256, then
/// renames it into place; the sha256 and size.
async fn download(mut client: Client, id: String, out: &Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = out.file_name() else {
        bail!("--out {}: not a file name", out.display());
    };
    let mut stream = client
        .download_job_weights(pb::DownloadJobWeightsRequest { job_id: id })
        .await
        .map_err(Refused::from)?
        .into_inner();
    let part = dir.join(format!(
        ".{}.part-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file =
        std::fs::File::create(&part).with_context(|| format!("writing {}", part.display()))?;
    let result = async {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let (mut sha, mut total) = (String::new(), 0u64);
        while let Some(chunk) = stream.message().await.map_err(Refused::from)? {
            if chunk.offset == 0 && !chunk.sha256.is_empty() {
                sha = chunk.sha256;
                total = chunk.total_bytes;
            }
            if chunk.offset != written {
                bail!(
                    "the node sent bytes at {} where {written} was expected",
                    chunk.offset
                );
            }
            hasher.update(&chunk.data);
            file.write_all(&chunk.data)
                .with_context(|| format!("writing {}", part.display()))?;
            written += chunk.data.len() as u64;
        }
        let got = format!("{:x}", hasher.finalize());
        if written != total || got != sha {
            bail!(
                "the download does not match the job's weights: {written} of {total} bytes, \
                 sha256 {got}, expected {sha}"
            );
        }
        file.sync_all()
            .with_context(|| format!("writing {}", part.display()))?;
        std::fs::rename(&part, out).with_context(|| format!("renaming into {}", out.display()))?;
        Ok((sha, total))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Following a job: its log lines and a progress bar (in a terminal) or plain lines.
mod follow {
    use super::*;
    use indicatif::{ProgressBar, ProgressStyle};

    /// Where log lines go (the bar is always on stderr).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Out {
        Stdout,
        Stderr,
    }

    fn bar() -> ProgressBar {
        let bar = ProgressBar::new(1000);
        let style = ProgressStyle::with_template("{bar:30.cyan/blue} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    }

    /// The bar's message: state, epoch, step, loss, rate, ETA.
    fn message(job: &pb::JobInfo) -> String {
        let mut parts = vec![
            job.state.clone(),
            format!("epoch {}/{}", job.current_epoch, job.total_epochs),
        ];
        if job.total_steps > 0 {
            parts.push(format!("step {}/{}", job.step, job.total_steps));
        }
        let loss = metric(job, "loss");
        if loss != "-" {
            parts.push(format!("loss {loss}"));
        }
        if job.samples_per_second > 0.0 {
            parts.push(format!("{:.0} samples/s", job.samples_per_second));
        }
        if job.eta_seconds >= 0.0 && job.state == "running" {
            parts.push(format!("ETA {}", duration(job.eta_seconds)));
        }
        parts.join("  ")
    }

    /// Follows job `id` until it ends; the job as it ended.
    pub async fn run(
        client: &mut Client,
        id: &str,
        tail: u32,
        out: Out,
    ) -> Result<pb::JobInfo, tonic::Status> {
        let request = pb::GetJobLogsRequest {
            job_id: id.to_string(),
            tail,
            follow: true,
        };
        let mut stream = client.get_job_logs(request).await?.into_inner();
        let bar = std::io::stdout()
            .is_terminal()
            .then(bar)
            .filter(|_| std::io::stderr().is_terminal());
        let mut last = pb::JobInfo::default();
        while let Some(chunk) = stream.message().await? {
            for line in chunk.lines {
                // Without a terminal the log lines alone tell the story (state changes,
                // epochs and metrics are in them).
                match &bar {
                    Some(bar) => bar.suspend(|| print_line(out, &line)),
                    None => print_line(out, &line),
                }
            }
            if let Some(job) = chunk.job {
                if let Some(bar) = &bar {
                    bar.set_position((f64::from(job.progress) * 1000.0).round() as u64);
                    bar.set_message(message(&job));
                }
                last = job;
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(last)
    }

    fn print_line(out: Out, line: &str) {
        match out {
            Out::Stdout => println!("{line}"),
            Out::Stderr => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.6), "1m00s");
        assert_eq!(duration(3725.0), "1h02m05s");
        assert_eq!(duration(-3.0), "0s");
    }

    #[test]
    fn oversized_graph_files_are_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        std::fs::write(&path, "x".repeat(11)).unwrap();
        assert_eq!(read_capped(&path, 11, "--graph").unwrap().len(), 11);
        let e = read_capped(&path, 10, "--graph").unwrap_err().to_string();
        assert!(e.ends_with("larger than 10 bytes"), "{e}");
    }
}
