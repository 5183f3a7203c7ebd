//! The one mapping of node errors to gRPC: a `tonic::Status` with the code of the error's
//! kind ([`ErrorKind::grpc_code`]) and the kind itself in the `cyxwiz-error-kind` metadata
//! (several kinds share a code), and the protocol's own `Error` message built from a status
//! so both agree.

use crate::node::{ErrorKind, NodeError, KIND_METADATA};
use cyxwiz_proto::protocol;
use tonic::{Code, Status};

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let message = match &e.param {
            Some(param) if !e.message.contains(param.as_str()) => format!("{param}: {}", e.message),
            _ => e.message,
        };
        let mut status = Status::new(e.kind.grpc_code(), message);
        if let Ok(kind) = e.kind.slug().parse() {
            status.metadata_mut().insert(KIND_METADATA, kind);
        }
        status
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

/// The protocol's `Error` for a node error of `kind`.
pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> protocol::Error {
    proto(&Status::from(NodeError::new(kind, message)))
}
