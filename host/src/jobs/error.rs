//! Why a job operation failed, typed. The node maps it once to its `NodeError` (and from
//! there to HTTP, gRPC and the CLI), in `node::error`.

use crate::store::StoreError;

use super::dataset::DatasetError;
use super::graph::GraphError;
use super::state::JobState;

/// A job operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A request field is out of bounds or malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// The model definition was refused (the message names the node or layer).
    #[error("graph: {0}")]
    Graph(#[from] GraphError),
    /// The dataset could not be loaded (the message names the file and field).
    #[error("dataset: {0}")]
    Dataset(#[from] DatasetError),
    /// No job has this id.
    #[error("no job {0}")]
    NotFound(String),
    /// The job id is not a UUID.
    #[error("job id {0:?} is not a UUID")]
    BadId(String),
    /// A job with this id exists already.
    #[error("job {0} exists already")]
    Exists(String),
    /// The queue is full.
    #[error("the job queue is full ({queued} queued, [jobs] max_queued_jobs = {max}); retry when a job ends")]
    QueueFull {
        /// Jobs waiting.
        queued: usize,
        /// The limit.
        max: u32,
    },
    /// The operation does not apply in the job's state.
    #[error("job {id} is {state}: {what}")]
    WrongState {
        /// The job.
        id: String,
        /// Its state.
        state: JobState,
        /// What cannot be done.
        what: &'static str,
    },
    /// No loaded plugin trains with that name.
    #[error("no training backend {name:?} (loaded: {loaded})")]
    NoBackend {
        /// The name asked for.
        name: String,
        /// The training backends loaded, comma-separated.
        loaded: String,
    },
    /// The job has no weights (yet).
    #[error("job {0} has no weights yet")]
    NoWeights(String),
    /// The training backend failed.
    #[error("training failed: {0}")]
    Training(String),
    /// The node is stopping.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file in the job's directory could not be written or read.
    #[error("job files: {0}")]
    Io(String),
}
