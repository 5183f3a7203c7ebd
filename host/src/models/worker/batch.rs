//! Gathering a batch on a worker thread: the job it picked up, every compatible job already
//! queued, and, only while the requests of the batch just answered are expected back, the
//! ones that arrive within a short window.
//!
//! Closed-loop clients (each waits for its answer before sending the next request) come back
//! a moment after their answers leave: the HTTP layer has to write them and the clients to
//! send again. A worker that took only what was queued at that instant ran a batch of one or
//! two, and the others waited a whole model call behind it, so batches alternated between a
//! few jobs and the rest (1 + 15 with 16 clients) and the model ran at its small-batch rate.
//! The window waits for the previous batch's count of jobs, for at most a quarter of its run
//! time and never more than [`MAX_WINDOW`] after its answers left; a worker whose last batch
//! was one job (a single client) or that has been idle longer than that never waits.

use super::{Job, Work};
use std::time::{Duration, Instant};

/// The longest a worker waits for jobs expected to join a batch.
pub const MAX_WINDOW: Duration = Duration::from_millis(10);

/// What a worker remembers of its last batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastBatch {
    /// Jobs it held.
    pub jobs: usize,
    /// How long the model ran on it.
    pub run: Duration,
    /// When its answers had been sent.
    pub ended: Option<Instant>,
}

impl LastBatch {
    /// A batch of `jobs` that started running at `started` and has just been answered.
    pub fn after(jobs: usize, started: Instant) -> Self {
        let ended = Instant::now();
        Self {
            jobs,
            run: ended.duration_since(started),
            ended: Some(ended),
        }
    }

    /// The deadline until which a new batch waits for more jobs and how many it waits for;
    /// `None` when it should take only what is queued: the last batch had one job, or the
    /// window after it has passed.
    pub fn window(&self, now: Instant) -> Option<(Instant, usize)> {
        let ended = self.ended?;
        if self.jobs < 2 {
            return None;
        }
        let deadline = ended + (self.run / 4).min(MAX_WINDOW);
        (now < deadline).then_some((deadline, self.jobs))
    }
}

/// Takes `first` and the jobs queued behind it that `size` accepts (it gives their input
/// count), up to `max_batch` inputs, waiting for late ones while `last`'s window is open;
/// jobs it refuses are returned apart, in order. Jobs whose callers went away are dropped.
pub fn gather(
    first: Job,
    rx: &crossbeam_channel::Receiver<Job>,
    max_batch: usize,
    last: &LastBatch,
    size: impl Fn(&Work) -> Option<usize>,
) -> (Vec<Job>, Vec<Job>) {
    let window = last.window(Instant::now());
    let mut batch = Vec::new();
    let mut others = Vec::new();
    let mut inputs = 0;
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match size(&job.work) {
            Some(n) => {
                if let Some(job) = job.live() {
                    inputs += n;
                    batch.push(job);
                }
            }
            None => others.push(job),
        }
        if inputs >= max_batch {
            break;
        }
        next = match rx.try_recv() {
            Ok(job) => Some(job),
            Err(_) => match window {
                Some((deadline, expected)) if batch.len() < expected => {
                    rx.recv_deadline(deadline).ok()
                }
                _ => None,
            },
        };
    }
    (batch, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_only_after_a_batch_of_several_jobs_and_closes_with_time() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // Never before any batch, nor after a batch of one (a single client).
        assert_eq!(LastBatch::default().window(now), None);
        let single = LastBatch {
            jobs: 1,
            run: ms(40),
            ended: Some(now),
        };
        assert_eq!(single.window(now), None);
        // After 16 jobs that ran 40 ms: wait for 16, for a quarter of the run.
        let sixteen = LastBatch {
            jobs: 16,
            run: ms(40),
            ended: Some(now),
        };
        assert_eq!(sixteen.window(now), Some((now + ms(10), 16)));
        assert_eq!(sixteen.window(now + ms(9)), Some((now + ms(10), 16)));
        // A node idle since then takes what is queued.
        assert_eq!(sixteen.window(now + ms(10)), None);
        // A long run waits at most MAX_WINDOW; a short one a quarter of its time.
        let long = LastBatch {
            run: Duration::from_secs(2),
            ..sixteen
        };
        assert_eq!(long.window(now), Some((now + MAX_WINDOW, 16)));
        let short = LastBatch {
            run: ms(4),
            ..sixteen
        };
        assert_eq!(short.window(now), Some((now + ms(1), 16)));
    }
}
