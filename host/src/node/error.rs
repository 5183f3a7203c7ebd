//! The one error of node operations: a [`Kind`] saying what went wrong, a message for the
//! caller, and what a transport may add (the parameter at fault, a machine code, a retry
//! delay). Every transport maps it exactly once: HTTP in `openai::error`
//! (`From<NodeError> for ApiError`), gRPC in `grpc::error` (`From<NodeError> for Status`), the
//! CLI here ([`NodeError::cli_line`]). [`Kind::http_status`] and [`Kind::grpc_code`] are that
//! table; README's "Errors" section prints it and a test walks every kind through both.

use crate::{
    access::Denied,
    deployments::{DeployError, Lookup},
    models::WorkerError,
};
use cyxwiz_sdk::ErrorKind as PluginKind;

/// The gRPC metadata key carrying the error's kind (several kinds share a code).
pub const KIND_METADATA: &str = "cyxwiz-error-kind";

/// What kind of failure a node operation met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request is malformed or asks for something out of bounds.
    InvalidInput,
    /// No such model, deployment, key or route (or one the caller may not see).
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// The model or node cannot do what was asked.
    Unsupported,
    /// The body or message is over its size limit.
    TooLarge,
    /// A queue or concurrency limit is full; retry shortly.
    Busy,
    /// The caller's key used up its requests per minute.
    RateLimited,
    /// A configured limit (e.g. the number of deployments) is reached.
    LimitReached,
    /// The model is loading, stopped or failed, or the node is shutting down.
    Unavailable,
    /// The key lacks the scope or may not use the model.
    PermissionDenied,
    /// No key or an unknown one.
    Unauthenticated,
    /// The memory budget or the model's memory is exhausted.
    OutOfMemory,
    /// The operation ran past its deadline.
    Timeout,
    /// This node does not implement the operation.
    Unimplemented,
    /// A bug or an unexpected failure; the detail is in the node log only.
    Internal,
}

impl Kind {
    /// Every kind, for tables and tests.
    pub const ALL: [Kind; 15] = [
        Kind::InvalidInput,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::Unsupported,
        Kind::TooLarge,
        Kind::Busy,
        Kind::RateLimited,
        Kind::LimitReached,
        Kind::Unavailable,
        Kind::PermissionDenied,
        Kind::Unauthenticated,
        Kind::OutOfMemory,
        Kind::Timeout,
        Kind::Unimplemented,
        Kind::Internal,
    ];

    /// The kind's name in logs, CLI lines and the README table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidInput => "invalid input",
            Kind::NotFound => "not found",
            Kind::AlreadyExists => "already exists",
            Kind::Unsupported => "unsupported",
            Kind::TooLarge => "too large",
            Kind::Busy => "busy",
            Kind::RateLimited => "rate limited",
            Kind::LimitReached => "limit reached",
            Kind::Unavailable => "unavailable",
            Kind::PermissionDenied => "permission denied",
            Kind::Unauthenticated => "unauthenticated",
            Kind::OutOfMemory => "out of memory",
            Kind::Timeout => "timeout",
            Kind::Unimplemented => "unimplemented",
            Kind::Internal => "internal",
        }
    }

    /// The kind's name as one token (`out_of_memory`), for metadata.
    pub fn slug(self) -> String {
        self.name().replace(' ', "_")
    }

    /// The HTTP status code.
    pub fn http_status(self) -> u16 {
        match self {
            Kind::InvalidInput | Kind::Unsupported => 400,
            Kind::Unauthenticated => 401,
            Kind::PermissionDenied => 403,
            Kind::NotFound => 404,
            Kind::AlreadyExists => 409,
            Kind::TooLarge => 413,
            Kind::Busy | Kind::RateLimited | Kind::LimitReached => 429,
            Kind::Internal => 500,
            Kind::Unimplemented => 501,
            Kind::Unavailable => 503,
            Kind::Timeout => 504,
            Kind::OutOfMemory => 507,
        }
    }

    /// OpenAI's error `type` for the kind.
    pub fn openai_type(self) -> &'static str {
        match self {
            Kind::PermissionDenied => "permission_error",
            Kind::RateLimited => "requests",
            Kind::Busy => "server_overloaded",
            Kind::Unavailable | Kind::OutOfMemory | Kind::Timeout => "service_unavailable",
            Kind::Internal | Kind::Unimplemented => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Kind::InvalidInput => Code::InvalidArgument,
            Kind::NotFound => Code::NotFound,
            Kind::AlreadyExists => Code::AlreadyExists,
            Kind::Unsupported => Code::FailedPrecondition,
            Kind::TooLarge => Code::OutOfRange,
            Kind::Busy | Kind::RateLimited | Kind::LimitReached | Kind::OutOfMemory => {
                Code::ResourceExhausted
            }
            Kind::Unavailable => Code::Unavailable,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::Timeout => Code::DeadlineExceeded,
            Kind::Unimplemented => Code::Unimplemented,
            Kind::Internal => Code::Internal,
        }
    }

    /// The kind of a gRPC status a peer (the running daemon) answered; the inverse of
    /// [`Kind::grpc_code`] where codes are shared, the nearest kind otherwise.
    pub fn from_grpc(code: tonic::Code) -> Kind {
        use tonic::Code;
        match code {
            Code::InvalidArgument => Kind::InvalidInput,
            Code::NotFound => Kind::NotFound,
            Code::AlreadyExists => Kind::AlreadyExists,
            Code::FailedPrecondition => Kind::Unsupported,
            Code::OutOfRange => Kind::TooLarge,
            Code::ResourceExhausted => Kind::Busy,
            Code::Unavailable | Code::Aborted | Code::Cancelled => Kind::Unavailable,
            Code::PermissionDenied => Kind::PermissionDenied,
            Code::Unauthenticated => Kind::Unauthenticated,
            Code::DeadlineExceeded => Kind::Timeout,
            Code::Unimplemented => Kind::Unimplemented,
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => Kind::Internal,
        }
    }

    /// Seconds a client should wait before retrying, for kinds where a retry may succeed.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Kind::Busy => Some(1),
            Kind::Unavailable => Some(5),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A node operation's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    /// What went wrong.
    pub kind: Kind,
    /// For the caller (never a secret, never a path the caller did not send).
    pub message: String,
    /// The request parameter at fault.
    pub param: Option<String>,
    /// A machine-readable code (OpenAI's `code`, e.g. `model_not_found`).
    pub code: Option<&'static str>,
    /// Seconds until a retry may succeed; defaults to [`Kind::retry_after`].
    pub retry_after: Option<u64>,
}

impl NodeError {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: kind.retry_after(),
        }
    }

    /// The request is malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidInput, message)
    }

    /// The parameter `param` is malformed.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param)
    }

    /// No model (deployment or alias) `name`, or one the caller may not see.
    pub fn unknown_model(name: &str) -> Self {
        Self::new(
            Kind::NotFound,
            format!("The model `{name}` does not exist or is not deployed on this node"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// Not implemented on this node, with the reason.
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Kind::Unimplemented, message)
    }

    /// A failure the caller cannot act on: `detail` goes to the node log, the caller gets a
    /// generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            Kind::Internal,
            "The node had an error while processing the request; see the node log",
        )
    }

    /// Names the parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets the retry delay.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The error a peer answered with `status` (the CLI reading the daemon's answers): the
    /// kind the node sent in [`KIND_METADATA`] if any, else the nearest to the code.
    pub fn from_status(status: &tonic::Status) -> Self {
        let sent = status
            .metadata()
            .get(KIND_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|name| Kind::ALL.into_iter().find(|k| k.slug() == name))
            .filter(|k| k.grpc_code() == status.code());
        Self::new(
            sent.unwrap_or_else(|| Kind::from_grpc(status.code())),
            status.message(),
        )
    }

    /// The one CLI form: `error (KIND): MESSAGE` on one line (control characters a peer
    /// sent are shown escaped).
    pub fn cli_line(&self) -> String {
        let message: String = self.message.escape_debug().collect();
        format!("error ({}): {message}", self.kind)
    }

    /// A model lookup that did not find a serving model.
    pub fn from_lookup(lookup: Lookup, name: &str) -> Self {
        match lookup {
            Lookup::Unknown | Lookup::Ready(_) => Self::unknown_model(name),
            Lookup::Loading => Self::new(
                Kind::Unavailable,
                format!("model `{name}` is still loading"),
            ),
            Lookup::Unavailable(why) => Self::new(Kind::Unavailable, why),
        }
    }
}

impl From<WorkerError> for NodeError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Overloaded { .. } | WorkerError::AtCapacity { .. } => {
                Self::new(Kind::Busy, e.to_string()).with_code("overloaded")
            }
            WorkerError::Stopped(_) => Self::new(Kind::Unavailable, e.to_string()),
            WorkerError::Unsupported { .. } => {
                Self::new(Kind::Unsupported, e.to_string()).with_param("model")
            }
            WorkerError::Model(e) => match e.kind {
                PluginKind::INVALID_INPUT => Self::invalid(e.message),
                PluginKind::UNSUPPORTED => Self::new(Kind::Unsupported, e.message),
                PluginKind::NOT_FOUND => Self::new(Kind::NotFound, e.message),
                PluginKind::BUSY => Self::new(Kind::Busy, e.message).with_code("overloaded"),
                PluginKind::OUT_OF_MEMORY => Self::new(
                    Kind::OutOfMemory,
                    format!("the model ran out of memory: {}", e.message),
                ),
                PluginKind::CANCELLED => Self::new(Kind::Unavailable, e.message),
                _ => Self::internal(format!("model call failed: {} ({})", e.message, e.kind)),
            },
        }
    }
}

impl From<DeployError> for NodeError {
    fn from(e: DeployError) -> Self {
        let kind = match &e {
            DeployError::Exists(_) => Kind::AlreadyExists,
            DeployError::NotFound(_) => Kind::NotFound,
            DeployError::OverBudget { .. } => Kind::OutOfMemory,
            DeployError::TooMany { .. } => Kind::LimitReached,
            // The model file is what the caller sent; it does not load.
            DeployError::Load(_) => Kind::InvalidInput,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<Denied> for NodeError {
    fn from(denied: Denied) -> Self {
        match &denied {
            Denied::Missing | Denied::Unknown { .. } => {
                Self::new(Kind::Unauthenticated, denied.to_string()).with_code("invalid_api_key")
            }
            Denied::Scope { .. } => Self::new(Kind::PermissionDenied, denied.to_string())
                .with_code("insufficient_scope"),
            Denied::RateLimited { decision, .. } => {
                Self::new(Kind::RateLimited, denied.to_string())
                    .with_code("rate_limit_exceeded")
                    .with_retry_after(decision.reset.as_secs())
            }
        }
    }
}

/// A node operation's result.
pub type NodeResult<T> = Result<T, NodeError>;

use crate::jobs::JobError;

/// A job operation's failure, by kind; the message names the field, node or file at fault.
impl From<JobError> for NodeError {
    fn from(e: JobError) -> Self {
        let kind = match &e {
            JobError::Invalid { .. }
            | JobError::Graph(_)
            | JobError::Dataset(_)
            | JobError::BadId(_) => Kind::InvalidInput,
            JobError::NotFound(_) | JobError::NoWeights(_) => Kind::NotFound,
            JobError::Exists(_) => Kind::AlreadyExists,
            JobError::QueueFull { .. } => Kind::LimitReached,
            JobError::WrongState { .. } | JobError::NoBackend { .. } => Kind::Unsupported,
            JobError::ShuttingDown => Kind::Unavailable,
            JobError::Store(_) | JobError::Io(_) | JobError::Training(_) => Kind::Internal,
        };
        let param = match &e {
            JobError::Invalid { field, .. } => Some(field.clone()),
            JobError::Graph(_) => Some("graph".to_owned()),
            JobError::Dataset(_) => Some("dataset".to_owned()),
            _ => None,
        };
        let mut err = NodeError::new(kind, e.to_string());
        err.param = param;
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_http_status_and_one_grpc_code_and_comes_back_from_its_code() {
        for kind in Kind::ALL {
            let http = kind.http_status();
            assert!((400..600).contains(&http), "{kind}: {http}");
            // Client faults are 4xx, node faults 5xx.
            let node_fault = matches!(
                kind,
                Kind::Unavailable
                    | Kind::OutOfMemory
                    | Kind::Timeout
                    | Kind::Unimplemented
                    | Kind::Internal
            );
            assert_eq!(http >= 500, node_fault, "{kind}");
            assert_ne!(kind.grpc_code(), tonic::Code::Ok, "{kind}");
            // The CLI reads the daemon's code back into the same kind, except where several
            // kinds share RESOURCE_EXHAUSTED.
            let back = Kind::from_grpc(kind.grpc_code());
            if kind.grpc_code() == tonic::Code::ResourceExhausted {
                assert_eq!(back, Kind::Busy);
            } else {
                assert_eq!(back, kind);
            }
        }
    }

    #[test]
    fn the_cli_line_is_one_line_with_the_kind() {
        let e = NodeError::new(Kind::NotFound, "no deployment `a\nb`");
        assert_eq!(e.cli_line(), "error (not found): no deployment `a\\nb`");
        let status = tonic::Status::already_exists("taken");
        assert_eq!(
            NodeError::from_status(&status).cli_line(),
            "error (already exists): taken"
        );
        // Kinds sharing a code come back by the metadata the node sends (and only when it
        // agrees with the code).
        let mut status = tonic::Status::resource_exhausted("full");
        assert_eq!(NodeError::from_status(&status).kind, Kind::Busy);
        status.metadata_mut().insert(
            KIND_METADATA,
            tonic::metadata::MetadataValue::from_static("out_of_memory"),
        );
        assert_eq!(NodeError::from_status(&status).kind, Kind::OutOfMemory);
        status.metadata_mut().insert(
            KIND_METADATA,
            tonic::metadata::MetadataValue::from_static("not_found"),
        );
        assert_eq!(NodeError::from_status(&status).kind, Kind::Busy);
    }

    #[test]
    fn a_model_that_does_not_load_is_invalid_input() {
        let e = NodeError::from(DeployError::Load("truncated file".into()));
        assert_eq!(e.kind, Kind::InvalidInput);
        assert_eq!(e.message, "truncated file");
    }
}
