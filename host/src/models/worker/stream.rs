//! The one channel a generation streams on: bounded, shared by every choice of a request,
//! written by the worker threads and read directly by the caller (the HTTP response body).
//!
//! A worker never blocks forever on its caller: a piece that finds the channel full waits at
//! most [`STALLED_CALLER`] for room (a caller that reads nothing for that long is treated as
//! gone), and a caller that drops the receiver wakes a waiting worker at once. Either way the
//! worker's sink answers "stop", which cancels the generation in the plugin and frees its slot.

use cyxwiz_sdk::{Error as PluginError, GenerateOutput};
use std::{
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
    time::{Duration, Instant},
};
use tokio::sync::mpsc::{self, error::TrySendError};

/// Pieces one choice may have produced and its caller not yet read; the channel of a request
/// holds this many per choice.
pub const PIECES_PER_CHOICE: usize = 32;

/// How long a worker waits for room in a full channel before it cancels the generation: its
/// caller read nothing for this long (a client that stopped reading its stream).
pub const STALLED_CALLER: Duration = Duration::from_secs(30);

/// What a generation sends its caller, tagged with the choice it belongs to.
#[derive(Debug)]
pub enum Piece {
    /// Text of choice `index`.
    Text(usize, String),
    /// Choice `index` ended; always its last piece.
    Done(usize, Result<GenerateOutput, PluginError>),
}

/// The receiving end of a generation: pieces of every choice in the order they were made.
/// Dropping it cancels every choice still generating.
pub type Pieces = mpsc::Receiver<Piece>;

/// A new channel for `choices` choices.
pub(super) fn channel(choices: usize) -> (PieceSender, Pieces) {
    let (tx, rx) = mpsc::channel(PIECES_PER_CHOICE * choices.max(1));
    (
        PieceSender {
            tx,
            stall: STALLED_CALLER,
        },
        rx,
    )
}

/// The worker's end of a generation's channel.
#[derive(Debug, Clone)]
pub(super) struct PieceSender {
    tx: mpsc::Sender<Piece>,
    stall: Duration,
}

impl PieceSender {
    /// Sends `piece`, waiting at most the stall limit for room. False when the caller is gone
    /// or read nothing for that long: the generation should stop.
    pub fn send(&self, piece: Piece) -> bool {
        let piece = match self.tx.try_send(piece) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(piece)) => piece,
        };
        match block_on_timeout(self.tx.send(piece), self.stall) {
            Some(sent) => sent.is_ok(),
            None => {
                tracing::warn!(
                    seconds = self.stall.as_secs_f64(),
                    "the caller read nothing for too long; cancelling its generation"
                );
                false
            }
        }
    }

    /// Whether the caller went away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The same sender with another stall limit (tests).
    #[cfg(test)]
    pub fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this (non-async) thread, parking between polls, until it is ready or
/// `limit` has passed (then None). Tokio's channels need only a waker, not a runtime.
fn block_on_timeout<F: Future>(future: F, limit: Duration) -> Option<F::Output> {
    let deadline = Instant::now() + limit;
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        // Wakes on the waker, on timeout, or spuriously: each time the future is polled again.
        std::thread::park_timeout(left);
    }
}
