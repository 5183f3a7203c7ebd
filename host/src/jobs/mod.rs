//! Training jobs: a caller submits a model definition ([`graph`]: the Engine's node graph or
//! our plain form) and a dataset ([`dataset`]); the [`executor`] validates both before
//! queueing, runs the job on a training plugin in its own thread (the host serves batches and
//! stores checkpoints: [`session`]), persists every state change ([`state`], the `jobs` and
//! `job_events` tables) and keeps each job's files in its directory ([`dir`]).

pub mod dataset;
pub mod dir;
pub mod error;
pub mod executor;
pub mod graph;
pub mod remote;
pub mod request;
pub mod session;
pub mod state;
pub mod view;
pub mod wire;

pub use error::JobError;
pub use executor::{parse_id, training_backends, JobStats, Jobs, Settings, CANCEL_DEADLINE};
pub use request::{JobConfig, JobRequest, Origin};
pub use session::Retune;
pub use state::JobState;
pub use view::{JobUpdate, JobView};
