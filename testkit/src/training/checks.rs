//! The training checks, each a function from the library (and the kit's settings) to an
//! outcome; `super` runs them in order under the deadline and records them.

use super::data::{self, Dataset, BATCH, TRAIN, VALIDATION};
use super::host::{run_job, Event, KitHost, Ran, Script, HOST_FAILURE};
use crate::checks::Outcome;
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::training::{
    initial_parameters, CheckpointReason, DataSplit, Directive, ModelSpec, OptimizerKind,
    TensorFile, TrainingJob, MODEL_KEY, STATE_PREFIX,
};
use cyxwiz_sdk::{ErrorKind, LoadOptions, Tensor};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// What every check needs: the library, the device, the per-job deadline, a scratch dir.
#[derive(Clone)]
pub(crate) struct Kit {
    pub lib: Arc<PluginLibrary>,
    pub device: String,
    pub limit: Duration,
    pub scratch: PathBuf,
}

/// Epochs of the kit's ordinary jobs.
pub(crate) const EPOCHS: u32 = 4;
const SEED: u64 = 7;

impl Kit {
    pub fn job(&self, name: &str, model: ModelSpec, epochs: u32) -> TrainingJob {
        TrainingJob {
            job_id: format!("testkit-{name}"),
            model,
            epochs,
            batch_size: BATCH as u32,
            train_batches: (TRAIN / BATCH) as u64,
            validation_batches: (VALIDATION / BATCH) as u64,
            seed: SEED,
            device: self.device.clone(),
            threads: 1,
            work_dir: self.scratch.clone(),
            resume: Vec::new(),
        }
    }

    pub fn run(
        &self,
        job: TrainingJob,
        data: &Arc<Dataset>,
        script: Script,
    ) -> Result<Ran, String> {
        let host = KitHost::new(data.clone(), SEED, script);
        run_job(&self.lib, job, host, self.limit)
    }

    /// Runs a job that must end without an error.
    pub fn run_ok(
        &self,
        job: TrainingJob,
        data: &Arc<Dataset>,
        script: Script,
    ) -> Result<KitHost, String> {
        let (host, result) = self.run(job, data, script)?;
        let out = result.map_err(|e| format!("the job failed: {} ({})", e.message, e.kind))?;
        let asked_to_stop = host.events.contains(&Event::Answered(Directive::STOP))
            || script.after_pause == Some(Directive::STOP);
        if out.stopped != asked_to_stop {
            return Err(format!(
                "the job returned stopped = {} ({out:?})",
                out.stopped
            ));
        }
        Ok(host)
    }
}

/// The trainable tensors of `spec` (its tensors without BatchNorm's running statistics).
fn trainable(spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
    initial_parameters(spec, 0)
        .into_iter()
        .filter(|t| !t.name.ends_with(".running_mean") && !t.name.ends_with(".running_var"))
        .map(|t| (t.name, t.shape))
        .collect()
}

/// A checkpoint decodes, names its model, holds every spec tensor with its shape, and the
/// optimizer state the backends agreed on (`state.<tensor>.<slot>`, PyTorch's names).
pub(crate) fn checkpoint_holds(bytes: &[u8], spec: &ModelSpec) -> Outcome {
    let file = TensorFile::decode(bytes).map_err(|e| format!("checkpoint does not decode: {e}"))?;
    let written: ModelSpec = serde_json::from_str(file.meta(MODEL_KEY).unwrap_or("null"))
        .map_err(|e| format!("checkpoint metadata {MODEL_KEY} is not the model spec: {e}"))?;
    if &written != spec {
        return Err("checkpoint names another model spec".into());
    }
    for t in initial_parameters(spec, 0) {
        file.expect(&t.name, &t.shape)
            .map_err(|e| format!("checkpoint: {e}"))?;
    }
    let o = &spec.optimizer;
    let slots: &[&str] = match o.kind {
        OptimizerKind::Sgd if o.momentum.unwrap_or(0.0) > 0.0 => &["momentum_buffer"],
        OptimizerKind::Sgd => &[],
        OptimizerKind::Adam | OptimizerKind::AdamW => &["exp_avg", "exp_avg_sq"],
        OptimizerKind::RmsProp if o.momentum.unwrap_or(0.0) > 0.0 => {
            &["square_avg", "momentum_buffer"]
        }
        OptimizerKind::RmsProp => &["square_avg"],
    };
    for (name, shape) in trainable(spec) {
        for slot in slots {
            file.expect(&format!("{STATE_PREFIX}{name}.{slot}"), &shape)
                .map_err(|e| format!("checkpoint optimizer state: {e}"))?;
        }
    }
    Ok(())
}

/// (a) The loss falls and the validation accuracy is good.
pub(crate) fn learns(kit: &Kit, name: &str, spec: ModelSpec, data: &Arc<Dataset>) -> Outcome {
    let host = kit.run_ok(kit.job(name, spec.clone(), EPOCHS), data, Script::default())?;
    let first = host
        .reports
        .first()
        .and_then(|r| r.metric("loss"))
        .ok_or("no step report with a `loss` metric")?;
    let ends: Vec<_> = host.reports.iter().filter(|r| r.epoch_end).collect();
    if ends.len() != EPOCHS as usize {
        return Err(format!(
            "{} epoch-end reports for {EPOCHS} epochs",
            ends.len()
        ));
    }
    let last = ends[ends.len() - 1];
    let (loss, acc) = (
        last.metric("loss").ok_or("no epoch loss")?,
        last.metric("val_accuracy").ok_or("no val_accuracy")?,
    );
    if loss.is_nan() || loss > 0.5 * first {
        return Err(format!(
            "training loss went from {first:.4} to {loss:.4}, not below half"
        ));
    }
    if acc < 0.9 {
        return Err(format!(
            "validation accuracy {acc:.3} after {EPOCHS} epochs (want >= 0.9)"
        ));
    }
    let reasons: Vec<_> = host.checkpoints.iter().map(|c| c.reason).collect();
    let mut want = vec![CheckpointReason::EPOCH; EPOCHS as usize - 1];
    want.push(CheckpointReason::FINAL);
    if reasons != want {
        return Err(format!("checkpoints {reasons:?}, expected {want:?}"));
    }
    let last = host
        .last(CheckpointReason::FINAL)
        .ok_or("no final checkpoint")?;
    checkpoint_holds(&last.data, &spec)
}

/// The events after the host's answer `answer`.
fn after(host: &KitHost, answer: Directive) -> Result<&[Event], String> {
    let at = host
        .events
        .iter()
        .position(|e| *e == Event::Answered(answer))
        .ok_or_else(|| format!("the host never answered {answer:?}"))?;
    Ok(&host.events[at + 1..])
}

fn no_batches(events: &[Event], what: &str) -> Outcome {
    match events.iter().find(|e| matches!(e, Event::Batch(..))) {
        Some(e) => Err(format!("a batch was requested after {what}: {e:?}")),
        None => Ok(()),
    }
}

/// (b) STOP after 5 steps: `stopped`, a STOPPED checkpoint at step 5, no batch after.
/// Also STOP at the first epoch end.
pub(crate) fn cancel(kit: &Kit, spec: ModelSpec, data: &Arc<Dataset>) -> Outcome {
    let script = Script {
        stop_after: Some(5),
        ..Script::default()
    };
    let (host, result) = kit.run(kit.job("cancel", spec.clone(), EPOCHS), data, script)?;
    let out = result.map_err(|e| format!("a stopped job must end Ok: {e}"))?;
    if !out.stopped || out.epochs_done != 0 {
        return Err(format!("after STOP at step 5: {out:?}"));
    }
    let events = after(&host, Directive::STOP)?;
    no_batches(events, "STOP")?;
    match host.checkpoints.last() {
        Some(c) if c.reason == CheckpointReason::STOPPED && c.steps_done == 5 => {
            checkpoint_holds(&c.data, &spec)?
        }
        other => {
            return Err(format!(
                "the last checkpoint must be STOPPED at step 5, got {:?}",
                other.map(|c| (c.reason, c.steps_done))
            ))
        }
    }
    let script = Script {
        stop_at_epoch_end: Some(1),
        ..Script::default()
    };
    let (host, result) = kit.run(kit.job("cancel-epoch", spec, EPOCHS), data, script)?;
    let out = result.map_err(|e| format!("a job stopped at an epoch end must end Ok: {e}"))?;
    if !out.stopped || out.epochs_done != 1 {
        return Err(format!("after STOP at the end of epoch 1: {out:?}"));
    }
    no_batches(after(&host, Directive::STOP)?, "STOP at an epoch end")?;
    match host.checkpoints.last() {
        Some(c) if c.reason == CheckpointReason::STOPPED && c.epochs_done == 1 => Ok(()),
        other => Err(format!(
            "after STOP at an epoch end the last checkpoint must be STOPPED with 1 epoch done, got {:?}",
            other.map(|c| (c.reason, c.epochs_done))
        )),
    }
}

/// (c) PAUSE after 3 steps: a PAUSE checkpoint, then `wait_while_paused`; CONTINUE carries
/// on to the end, STOP ends with a STOPPED checkpoint and no further batch.
pub(crate) fn pause(kit: &Kit, spec: ModelSpec, data: &Arc<Dataset>) -> Outcome {
    let script = Script {
        pause_after: Some(3),
        ..Script::default()
    };
    let host = kit.run_ok(kit.job("pause", spec.clone(), 2), data, script)?;
    let events = after(&host, Directive::PAUSE)?;
    let order: Vec<_> = events.iter().take(2).collect();
    if order != [&Event::Checkpoint(CheckpointReason::PAUSE), &Event::Wait] {
        return Err(format!(
            "after PAUSE expected a PAUSE checkpoint then a wait, got {order:?}"
        ));
    }
    let pause = host
        .last(CheckpointReason::PAUSE)
        .ok_or("no PAUSE checkpoint stored")?;
    if pause.steps_done != 3 {
        return Err(format!(
            "the PAUSE checkpoint says {} steps done, not 3",
            pause.steps_done
        ));
    }
    checkpoint_holds(&pause.data, &spec)?;
    let steps = host.reports.iter().filter(|r| !r.epoch_end).count() as u64;
    if steps != 2 * (TRAIN / BATCH) as u64 {
        return Err(format!(
            "{steps} steps reported after a paused and continued 2-epoch job"
        ));
    }
    let script = Script {
        pause_after: Some(3),
        after_pause: Some(Directive::STOP),
        ..Script::default()
    };
    let (host, result) = kit.run(kit.job("pause-stop", spec, 2), data, script)?;
    let out = result.map_err(|e| format!("a job stopped while paused must end Ok: {e}"))?;
    if !out.stopped {
        return Err(format!("STOP while paused: {out:?}"));
    }
    let events = after(&host, Directive::PAUSE)?;
    no_batches(events, "STOP while paused")?;
    let reasons: Vec<_> = host.checkpoints.iter().map(|c| c.reason).collect();
    if reasons != [CheckpointReason::PAUSE, CheckpointReason::STOPPED] {
        return Err(format!(
            "checkpoints {reasons:?}, expected [PAUSE, STOPPED]"
        ));
    }
    Ok(())
}

/// `|a - b| <= tolerance`, false for NaN.
fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn loss_at(losses: &[(u64, f64)], step: u64) -> Result<f64, String> {
    losses
        .iter()
        .find(|(s, _)| *s == step)
        .map(|(_, l)| *l)
        .ok_or_else(|| format!("no loss reported for step {step}"))
}

fn max_difference(a: &TensorFile, b: &TensorFile) -> Result<f64, String> {
    let mut worst = 0f64;
    for t in a.weights_only().tensors {
        let other = b
            .get(&t.name)
            .ok_or_else(|| format!("tensor {} missing", t.name))?;
        for (x, y) in t.data.iter().zip(&other.data) {
            worst = worst.max(f64::from((x - y).abs()));
        }
    }
    Ok(worst)
}

/// (d) Resume is exact: mid-epoch (from a PAUSE checkpoint after step 7) and at an epoch
/// boundary (from the EPOCH checkpoint after epoch 1), the next step's loss equals the
/// uninterrupted run's within 1e-5, later steps within 1e-4, and the final weights agree.
pub(crate) fn resume(kit: &Kit, spec: ModelSpec, data: &Arc<Dataset>) -> Outcome {
    let epochs = 2;
    let whole = kit.run_ok(
        kit.job("resume-whole", spec.clone(), epochs),
        data,
        Script::default(),
    )?;
    let want = whole.step_losses(None);
    let final_whole =
        TensorFile::decode(&whole.last(CheckpointReason::FINAL).ok_or("no FINAL")?.data)
            .map_err(|e| e.to_string())?;
    let k = 7u64;
    let script = Script {
        pause_after: Some(k),
        after_pause: Some(Directive::STOP),
        ..Script::default()
    };
    let (paused, result) = kit.run(kit.job("resume-part", spec.clone(), epochs), data, script)?;
    result.map_err(|e| format!("the interrupted run failed: {e}"))?;
    let pause = paused
        .last(CheckpointReason::PAUSE)
        .ok_or("no PAUSE checkpoint")?;
    let before = paused
        .reports
        .iter()
        .rev()
        .find(|r| !r.epoch_end)
        .and_then(|r| r.metric("loss"));
    let epoch_one = whole
        .checkpoints
        .iter()
        .find(|c| c.reason == CheckpointReason::EPOCH && c.epochs_done == 1)
        .ok_or("no EPOCH checkpoint after epoch 1")?;
    let per_epoch = (TRAIN / BATCH) as u64;
    for (label, bytes, next, before) in [
        (
            "mid-epoch (PAUSE after step 7)",
            pause.data.clone(),
            k + 1,
            before,
        ),
        (
            "epoch boundary (EPOCH 1)",
            epoch_one.data.clone(),
            per_epoch + 1,
            None,
        ),
    ] {
        checkpoint_holds(&bytes, &spec).map_err(|e| format!("{label}: {e}"))?;
        let mut job = kit.job("resume-rest", spec.clone(), epochs);
        job.resume = bytes;
        let rest = kit
            .run_ok(job, data, Script::default())
            .map_err(|e| format!("{label}: {e}"))?;
        let first_batch = rest.events.iter().find_map(|e| match e {
            Event::Batch(DataSplit::TRAIN, epoch, index) => Some((*epoch, *index)),
            _ => None,
        });
        let expected = ((next - 1) / per_epoch, (next - 1) % per_epoch);
        if first_batch != Some((expected.0 as u32, expected.1)) {
            return Err(format!("{label}: the resumed job first asked for batch {first_batch:?}, expected (epoch, index) {expected:?}"));
        }
        let got = rest.step_losses(before);
        let (a, b) = (loss_at(&got, next)?, loss_at(&want, next)?);
        if !close(a, b, 1e-5) {
            return Err(format!(
                "{label}: step {next} loss {a:.8} after resuming, {b:.8} uninterrupted"
            ));
        }
        for &(step, loss) in &got {
            let w = loss_at(&want, step)?;
            if !close(loss, w, 1e-4) {
                return Err(format!(
                    "{label}: step {step} loss {loss:.8} after resuming, {w:.8} uninterrupted"
                ));
            }
        }
        let last = rest
            .last(CheckpointReason::FINAL)
            .ok_or("no FINAL after resuming")?;
        let file = TensorFile::decode(&last.data).map_err(|e| e.to_string())?;
        let worst = max_difference(&final_whole, &file)?;
        if worst > 1e-4 {
            return Err(format!(
                "{label}: final weights differ from the uninterrupted run's by {worst:e}"
            ));
        }
    }
    Ok(())
}

fn refused(
    what: &str,
    result: Result<Ran, String>,
    kinds: &[ErrorKind],
    says: Option<&str>,
) -> Outcome {
    let (_, result) = result?;
    match result {
        Ok(out) => Err(format!("{what}: the job succeeded ({out:?}); it must fail")),
        Err(e) if e.kind == ErrorKind::PANICKED => {
            Err(format!("{what}: the plugin panicked: {}", e.message))
        }
        Err(e) if e.message.trim().is_empty() => {
            Err(format!("{what}: {} error with no message", e.kind))
        }
        Err(e) if !kinds.contains(&e.kind) => Err(format!(
            "{what}: expected {kinds:?}, got {}: {}",
            e.kind, e.message
        )),
        Err(e) if says.is_some_and(|s| !e.message.contains(s)) => Err(format!(
            "{what}: the error does not carry the host's reason: {}",
            e.message
        )),
        Err(_) => Ok(()),
    }
}

/// (e) Jobs that cannot run end in a clean error.
pub(crate) fn bad_jobs(kit: &Kit, spec: ModelSpec, data: &Arc<Dataset>) -> Outcome {
    let invalid = [ErrorKind::INVALID_INPUT];
    let mut broken = spec.clone();
    let dense = broken
        .layers
        .iter_mut()
        .find(|l| matches!(l.kind, cyxwiz_sdk::training::LayerKind::Dense { .. }))
        .ok_or("the spec has no Dense layer")?;
    dense.kind = cyxwiz_sdk::training::LayerKind::Dense {
        inputs: 5,
        units: 16,
    };
    refused(
        "a spec whose shapes do not chain",
        kit.run(kit.job("bad-spec", broken, 1), data, Script::default()),
        &invalid,
        None,
    )?;
    let mut job = kit.job("bad-device", spec.clone(), 1);
    job.device = "cuda:7".into();
    refused(
        "device cuda:7",
        kit.run(job, data, Script::default()),
        &[
            ErrorKind::INVALID_INPUT,
            ErrorKind::UNSUPPORTED,
            ErrorKind::NOT_FOUND,
        ],
        None,
    )?;
    let scripts = [
        (
            "a batch of the wrong shape",
            Script {
                wrong_shape: true,
                ..Script::default()
            },
            None,
        ),
        (
            "a label outside the classes",
            Script {
                bad_label: true,
                ..Script::default()
            },
            None,
        ),
        (
            "a host that fails a batch",
            Script {
                fail_batches: true,
                ..Script::default()
            },
            Some(HOST_FAILURE),
        ),
    ];
    for (what, script, says) in scripts {
        refused(
            what,
            kit.run(kit.job("bad-batch", spec.clone(), 1), data, script),
            &invalid,
            says,
        )?;
    }
    let script = Script {
        fail_checkpoints: true,
        ..Script::default()
    };
    let (_, result) = kit.run(kit.job("bad-checkpoint", spec.clone(), 1), data, script)?;
    match result {
        Err(e) if e.kind != ErrorKind::PANICKED && !e.message.trim().is_empty() => {}
        other => return Err(format!("a host that cannot store checkpoints: {other:?}")),
    }
    let mut job = kit.job("bad-resume", spec, 1);
    job.resume = b"these bytes are not a checkpoint".to_vec();
    refused(
        "a resume checkpoint of garbage",
        kit.run(job, data, Script::default()),
        &invalid,
        None,
    )
}

/// The loss and accuracy the served model gives on the validation split, computed the way
/// the spec's loss defines them.
fn served_scores(
    kit: &Kit,
    path: &std::path::Path,
    spec: &ModelSpec,
    data: &Dataset,
) -> Result<(f64, f64), String> {
    let options = LoadOptions {
        device: kit.device.clone(),
        ..LoadOptions::default()
    };
    let model = kit
        .lib
        .load(path, &options)
        .map_err(|e| format!("the plugin's loader refused its own weights: {e}"))?;
    let input = model
        .info()
        .inputs
        .first()
        .ok_or("the loaded model declares no input")?
        .name
        .clone();
    let width: usize = data.sample.iter().product();
    let (mut loss, mut correct) = (0f64, 0usize);
    let v = &data.validation;
    for start in (0..v.len()).step_by(BATCH) {
        let end = (start + BATCH).min(v.len());
        let mut shape = vec![(end - start) as i64];
        shape.extend(data.sample.iter().map(|&d| d as i64));
        let x = Tensor::from_f32(input.clone(), shape, &v.inputs[start * width..end * width]);
        let outputs = model
            .infer(&[x.view()])
            .map_err(|e| format!("infer: {e}"))?;
        let logits = outputs
            .iter()
            .find(|t| t.name == "logits")
            .or(outputs.first())
            .ok_or("no outputs")?;
        let values = logits.to_f32_vec().map_err(|e| e.to_string())?;
        for (row, &label) in values.chunks(spec.classes).zip(&v.labels[start..end]) {
            let row: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
            let label = label as usize;
            loss += match spec.loss {
                cyxwiz_sdk::training::Loss::CrossEntropy => {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                    lse - row[label]
                }
                cyxwiz_sdk::training::Loss::Mse => {
                    row.iter()
                        .enumerate()
                        .map(|(i, x)| (x - f64::from(u8::from(i == label))).powi(2))
                        .sum::<f64>()
                        / spec.classes as f64
                }
            };
            let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            correct += usize::from(best == label);
        }
    }
    Ok((loss / v.len() as f64, correct as f64 / v.len() as f64))
}

/// (g) The final checkpoint's weights, written as the host writes `weights.safetensors` and
/// loaded through the plugin's own loader, score the validation split as the network did at
/// the end of training.
pub(crate) fn serves_its_weights(
    kit: &Kit,
    name: &str,
    spec: ModelSpec,
    data: &Arc<Dataset>,
) -> Outcome {
    let host = kit.run_ok(kit.job(name, spec.clone(), 2), data, Script::default())?;
    let path = write_weights(&host, &kit.scratch, name)?;
    let end = host
        .reports
        .iter()
        .rev()
        .find(|r| r.epoch_end)
        .ok_or("no epoch-end report")?;
    let want = (
        end.metric("val_loss").ok_or("no val_loss")?,
        end.metric("val_accuracy").ok_or("no val_accuracy")?,
    );
    let got = served_scores(kit, &path, &spec, data)?;
    let tolerance = 1e-4 * want.0.abs().max(1.0);
    if (got.0 - want.0).abs() > tolerance || (got.1 - want.1).abs() > 1.0 / VALIDATION as f64 {
        return Err(format!(
            "served weights score loss {:.6}, accuracy {:.4}; training's last evaluation said {:.6}, {:.4}",
            got.0, got.1, want.0, want.1
        ));
    }
    Ok(())
}

/// Writes the final checkpoint's weights (no `state.` entries) as `<dir>/<name>.safetensors`.
pub(crate) fn write_weights(
    host: &KitHost,
    dir: &std::path::Path,
    name: &str,
) -> Result<PathBuf, String> {
    let last = host
        .last(CheckpointReason::FINAL)
        .ok_or("no FINAL checkpoint")?;
    let file = TensorFile::decode(&last.data).map_err(|e| format!("final checkpoint: {e}"))?;
    let path = dir.join(format!("{name}.safetensors"));
    std::fs::write(&path, file.weights_only().encode())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The kit's datasets, shared by the checks.
pub(crate) fn datasets() -> (Arc<Dataset>, Arc<Dataset>) {
    (Arc::new(data::blobs(1)), Arc::new(data::images(2)))
}
