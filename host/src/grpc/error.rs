//! Every mapping from the node's errors to gRPC: a `tonic::Status` with the right code, and
//! the protocol's own `Error` message built from it so both agree.

use crate::{
    deployments::{DeployError, Lookup},
    models::WorkerError,
};
use cyxwiz_proto::protocol;
use cyxwiz_sdk::ErrorKind;
use tonic::{Code, Status};

/// A model call's failure.
pub fn worker(e: WorkerError) -> Status {
    match &e {
        WorkerError::Overloaded { .. } | WorkerError::AtCapacity { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        WorkerError::Stopped(_) => Status::unavailable(e.to_string()),
        WorkerError::Unsupported { .. } => Status::failed_precondition(e.to_string()),
        WorkerError::Model(err) => match err.kind {
            ErrorKind::INVALID_INPUT | ErrorKind::UNSUPPORTED => {
                Status::invalid_argument(err.message.clone())
            }
            ErrorKind::NOT_FOUND => Status::not_found(err.message.clone()),
            ErrorKind::BUSY => Status::resource_exhausted(err.message.clone()),
            ErrorKind::OUT_OF_MEMORY => {
                Status::resource_exhausted(format!("the model ran out of memory: {}", err.message))
            }
            _ => {
                tracing::error!(error = %err.message, kind = %err.kind, "model call failed");
                Status::internal("the model failed; see the node log")
            }
        },
    }
}

/// A deploy or undeploy refusal.
pub fn deploy(e: DeployError) -> Status {
    match &e {
        DeployError::Exists(_) => Status::already_exists(e.to_string()),
        DeployError::NotFound(_) => Status::not_found(e.to_string()),
        DeployError::OverBudget { .. } | DeployError::TooMany { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        DeployError::Load(_) => Status::invalid_argument(e.to_string()),
    }
}

/// A deployment lookup that did not find a serving model.
pub fn lookup(name: &str, found: Lookup) -> Status {
    match found {
        Lookup::Ready(_) => Status::internal("model is ready"),
        Lookup::Loading => Status::unavailable(format!("deployment `{name}` is still loading")),
        Lookup::Unavailable(reason) => Status::unavailable(reason),
        Lookup::Unknown => Status::not_found(format!("no deployment `{name}` on this node")),
    }
}

/// The protocol's `Error` for a status: the gRPC code number, its message, and the code's
/// name as details.
pub fn proto(status: &Status) -> protocol::Error {
    protocol::Error {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: format!("{:?}", status.code()),
    }
}

/// The protocol's `Error` for a refusal that is not a failed call (e.g. a declined job).
pub fn refusal(code: Code, message: impl Into<String>) -> protocol::Error {
    proto(&Status::new(code, message))
}
