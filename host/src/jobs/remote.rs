//! A dataset that stays on the caller's side (`remote://engine`): the Engine keeps its data
//! and answers batch requests over the P2P training stream. [`RemoteData`] is what a job's
//! session pulls batches from: it asks for the samples the seeded shuffle picked, keeps
//! several requests in flight ahead of training, checks every answer's size and labels
//! before decoding it, and turns a silent or vanished peer into a clean job error.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cyxwiz_sdk::training::{Batch, DataSplit};
use tokio::sync::mpsc;

/// A batch request for the stream to send: `request_id`, the split, the sample indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAsk {
    /// Echoed by the answer.
    pub request_id: i32,
    /// `train` or `validation`.
    pub split: DataSplit,
    /// The samples wanted, in order.
    pub indices: Vec<i64>,
}

/// The raw answer to a [`BatchAsk`].
#[derive(Debug, Clone, Default)]
pub struct RawBatch {
    /// f32 little-endian samples.
    pub images: Vec<u8>,
    /// i32 little-endian labels.
    pub labels: Vec<u8>,
}

/// What the Engine said about its dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteShape {
    /// Training samples.
    pub train: usize,
    /// Validation samples (0: none).
    pub validation: usize,
    /// The shape of one sample.
    pub sample: Vec<usize>,
    /// Classes (labels are `0..classes`).
    pub classes: u32,
}

type Key = (u8, u32, u64);

#[derive(Debug)]
struct Slot {
    count: usize,
    result: Option<Result<Batch, String>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: i32,
    slots: HashMap<i32, Slot>,
    by_key: HashMap<Key, i32>,
    closed: Option<String>,
}

/// The session's side of a remote dataset.
#[derive(Debug)]
pub struct RemoteData {
    shape: RemoteShape,
    sample_len: usize,
    asks: mpsc::UnboundedSender<BatchAsk>,
    state: Mutex<State>,
    changed: Condvar,
    timeout: Duration,
    max_bytes: usize,
}

impl RemoteData {
    /// A dataset of `shape` whose batch requests go to `asks`; an answer must come within
    /// `timeout` and be at most `max_bytes`.
    pub fn new(
        shape: RemoteShape,
        asks: mpsc::UnboundedSender<BatchAsk>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Self {
        Self {
            sample_len: shape.sample.iter().product(),
            shape,
            asks,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            timeout,
            max_bytes,
        }
    }

    /// The dataset's shape.
    pub fn shape(&self) -> &RemoteShape {
        &self.shape
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the request for batch `(split, epoch, index)` unless it was sent already.
    pub fn ask(&self, split: DataSplit, epoch: u32, index: u64, indices: &[usize]) {
        let key = (split.0, epoch, index);
        let mut state = self.lock();
        if state.closed.is_some() || state.by_key.contains_key(&key) {
            return;
        }
        state.next_id = state.next_id.wrapping_add(1).max(1);
        let request_id = state.next_id;
        state.by_key.insert(key, request_id);
        state.slots.insert(
            request_id,
            Slot {
                count: indices.len(),
                result: None,
            },
        );
        let ask = BatchAsk {
            request_id,
            split,
            indices: indices.iter().map(|&i| i as i64).collect(),
        };
        if self.asks.send(ask).is_err() {
            state.closed = Some("the Engine's training stream has closed".into());
            self.changed.notify_all();
        }
    }

    /// Waits for batch `(split, epoch, index)` (asked before with [`RemoteData::ask`]).
    pub fn take(&self, split: DataSplit, epoch: u32, index: u64) -> Result<Batch, String> {
        let key = (split.0, epoch, index);
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        let Some(&id) = state.by_key.get(&key) else {
            return Err(format!(
                "batch {index} of epoch {epoch} was never requested"
            ));
        };
        loop {
            if let Some(result) = state.slots.get_mut(&id).and_then(|s| s.result.take()) {
                state.slots.remove(&id);
                state.by_key.remove(&key);
                return result;
            }
            if let Some(why) = &state.closed {
                return Err(why.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the Engine did not answer batch request {id} within {} s ([p2p] batch_timeout_seconds)",
                    self.timeout.as_secs()
                ));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Takes the Engine's answer to request `request_id`: `Err` carries the Engine's own error.
    /// An answer to no outstanding request is ignored and reported as `false`.
    pub fn deliver(&self, request_id: i32, answer: Result<RawBatch, String>) -> bool {
        let mut state = self.lock();
        let Some(slot) = state.slots.get_mut(&request_id) else {
            return false;
        };
        if slot.result.is_some() {
            return false;
        }
        let count = slot.count;
        slot.result = Some(answer.and_then(|raw| self.decode(count, raw)));
        self.changed.notify_all();
        true
    }

    /// Ends every wait with `why` (the stream closed, the job ended).
    pub fn close(&self, why: &str) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(why.to_owned());
        }
        self.changed.notify_all();
    }

    fn decode(&self, count: usize, raw: RawBatch) -> Result<Batch, String> {
        let total = raw.images.len() + raw.labels.len();
        if total > self.max_bytes {
            return Err(format!(
                "a batch answer of {total} bytes is over [p2p] max_batch_bytes = {}",
                self.max_bytes
            ));
        }
        let want_images = count * self.sample_len * 4;
        if raw.images.len() != want_images {
            return Err(format!(
                "a batch of {count} samples of shape {:?} needs {want_images} image bytes (f32), the Engine sent {}",
                self.shape.sample,
                raw.images.len()
            ));
        }
        if raw.labels.len() != count * 4 {
            return Err(format!(
                "a batch of {count} samples needs {} label bytes (int32), the Engine sent {}",
                count * 4,
                raw.labels.len()
            ));
        }
        let inputs: Vec<f32> = raw
            .images
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(bad) = inputs.iter().position(|v| !v.is_finite()) {
            return Err(format!("sample value {bad} of the batch is not finite"));
        }
        let mut labels = Vec::with_capacity(count);
        for b in raw.labels.chunks_exact(4) {
            let label = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if label < 0 || label as u32 >= self.shape.classes {
                return Err(format!(
                    "label {label} is outside 0..{} (the dataset's classes)",
                    self.shape.classes
                ));
            }
            labels.push(i64::from(label));
        }
        let mut shape = vec![count];
        shape.extend_from_slice(&self.shape.sample);
        Ok(Batch {
            inputs,
            shape,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(timeout_ms: u64) -> (RemoteData, mpsc::UnboundedReceiver<BatchAsk>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shape = RemoteShape {
            train: 10,
            validation: 0,
            sample: vec![1, 2],
            classes: 3,
        };
        (
            RemoteData::new(shape, tx, Duration::from_millis(timeout_ms), 1 << 20),
            rx,
        )
    }

    fn raw(values: &[f32], labels: &[i32]) -> RawBatch {
        RawBatch {
            images: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            labels: labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn asks_once_and_decodes_the_answer() {
        let (d, mut rx) = data(5_000);
        d.ask(DataSplit::TRAIN, 0, 0, &[3, 1]);
        d.ask(DataSplit::TRAIN, 0, 0, &[3, 1]);
        let ask = rx.try_recv().unwrap();
        assert_eq!(ask.indices, [3, 1]);
        assert!(rx.try_recv().is_err(), "a batch is requested once");
        assert!(!d.deliver(ask.request_id + 7, Ok(raw(&[], &[]))));
        assert!(d.deliver(ask.request_id, Ok(raw(&[0.1, 0.2, 0.3, 0.4], &[2, 0]))));
        let b = d.take(DataSplit::TRAIN, 0, 0).unwrap();
        assert_eq!(b.shape, [2, 1, 2]);
        assert_eq!(b.labels, [2, 0]);
        assert_eq!(b.inputs, [0.1, 0.2, 0.3, 0.4]);
    }

    #[test]
    fn bad_answers_silence_and_closing_are_errors() {
        let (d, mut rx) = data(50);
        d.ask(DataSplit::TRAIN, 0, 0, &[0, 1]);
        let id = rx.try_recv().unwrap().request_id;
        d.deliver(id, Ok(raw(&[0.0; 3], &[0, 1])));
        assert!(d
            .take(DataSplit::TRAIN, 0, 0)
            .unwrap_err()
            .contains("image bytes"));
        d.ask(DataSplit::TRAIN, 0, 1, &[0]);
        let id = rx.try_recv().unwrap().request_id;
        d.deliver(id, Ok(raw(&[0.0, 0.0], &[3])));
        assert!(d
            .take(DataSplit::TRAIN, 0, 1)
            .unwrap_err()
            .contains("label 3"));
        d.ask(DataSplit::TRAIN, 0, 2, &[0]);
        assert!(d
            .take(DataSplit::TRAIN, 0, 2)
            .unwrap_err()
            .contains("did not answer"));
        d.ask(DataSplit::VALIDATION, 0, 0, &[0]);
        d.close("the Engine's training stream has closed");
        assert!(d
            .take(DataSplit::VALIDATION, 0, 0)
            .unwrap_err()
            .contains("closed"));
    }
}
