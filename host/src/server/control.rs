//! The operator's control socket: a Unix socket `control.sock` in the data directory (mode
//! 0600, so only the node's user can reach it) serving a small HTTP API that the CLI's
//! `deploy`, `undeploy` and `deployments list` use on the running daemon:
//! `GET /status`, `GET /deployments`, `POST /deployments` (a `[[deployments]]` entry as JSON)
//! and `DELETE /deployments/{name}`.

use super::AppState;
use crate::{config::DeploymentConfig, deployments::DeployError, openai::ApiError};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde_json::json;
use std::{
    io::{Read, Write},
    path::{Path as FsPath, PathBuf},
    sync::Arc,
};

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &FsPath) -> PathBuf {
    data_dir.join("control.sock")
}

fn deploy_error(e: DeployError) -> Response {
    let (status, kind) = match &e {
        DeployError::Exists(_) => (StatusCode::CONFLICT, "conflict"),
        DeployError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        DeployError::OverBudget { .. } => (StatusCode::INSUFFICIENT_STORAGE, "over_budget"),
        DeployError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
        DeployError::Load(_) => (StatusCode::UNPROCESSABLE_ENTITY, "load_failed"),
    };
    (
        status,
        Json(json!({"error": {"message": e.to_string(), "type": kind}})),
    )
        .into_response()
}

async fn list(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({"deployments": state.deployments.snapshot()})).into_response()
}

async fn create(
    State(state): State<Arc<AppState>>,
    Json(config): Json<DeploymentConfig>,
) -> Response {
    if config.name.trim().is_empty() {
        return ApiError::invalid_param("name", "a deployment needs a name").into_response();
    }
    let name = config.name.clone();
    let path = config.path.display().to_string();
    let worker_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        worker_state
            .deployments
            .deploy(config, &worker_state.registry)
    })
    .await;
    match outcome {
        Ok(Ok(view)) => {
            state.audit("deployment_created", &name, &path);
            (StatusCode::CREATED, Json(json!({"deployment": view}))).into_response()
        }
        Ok(Err(e)) => {
            state.audit("deployment_failed", &name, &e.to_string());
            deploy_error(e)
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn remove(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.deployments.undeploy(&name) {
        Ok(()) => {
            state.audit("deployment_stopped", &name, "");
            Json(json!({"stopped": name})).into_response()
        }
        Err(e) => deploy_error(e),
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    let deployments = state.deployments.snapshot();
    let count =
        |s: crate::deployments::Status| deployments.iter().filter(|d| d.status == s).count();
    Json(json!({
        "node": {
            "id": state.central.node_id(),
            "name": state.node_name,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
        },
        "central": state.central.status(),
        "grpc_ports": state.grpc_ports,
        "deployments": {
            "total": deployments.len(),
            "ready": count(crate::deployments::Status::Ready) + count(crate::deployments::Status::Running),
            "loading": count(crate::deployments::Status::Loading) + count(crate::deployments::Status::Pending),
            "failed": count(crate::deployments::Status::Failed),
        },
        "plugins": {"loaded": state.plugins_loaded, "failed": state.plugins_failed},
    }))
    .into_response()
}

/// The control router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/deployments", get(list).post(create))
        .route("/deployments/{name}", delete(remove))
        .with_state(state)
}

/// Binds the control socket, replacing a stale one. The socket is mode 0600 from the moment it
/// appears at `path`: it is bound inside a fresh 0700 directory beside `path` (nobody else can
/// reach it there), made 0600, then renamed into place; a bound Unix socket is its inode, so
/// the listener stays reachable under the new name. A umask around `bind` would do the same,
/// but the umask is process-wide and other threads (the plugin loader, the sampler, tokio's
/// workers) may be creating files and directories at this moment.
pub fn bind(path: &FsPath) -> std::io::Result<tokio::net::UnixListener> {
    if path.exists() {
        // A live daemon answers on it; a stale file from a crash does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: another node is running on this data directory",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(FsPath::new("."));
    let private = private_dir(parent)?;
    let bound = (|| {
        use std::os::unix::fs::PermissionsExt;
        let staged = private.join("s");
        let listener = tokio::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(private.join("s"));
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Creates a fresh directory only this user can enter, in `parent`. Its name (`.c` and 8 hex
/// digits) plus the staged socket's (`s`) is no longer than `control.sock`: socket paths are
/// limited to 107 bytes.
fn private_dir(parent: &FsPath) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    loop {
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = parent.join(format!(".c{:08x}", u32::from_le_bytes(nonce)));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            other => return other.map(|()| dir),
        }
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens.
    #[error("cannot reach the running node at {path}: {source} (is `cyxwiz-node run` running with this data directory?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The answer was not understood.
    #[error("control socket: unexpected answer: {0}")]
    Protocol(String),
}

/// Sends one request to the daemon's control socket and returns the JSON answer.
pub fn request(
    socket: &FsPath,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol(String::from_utf8_lossy(&answer).into()))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let raw = &answer[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(head.clone()))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    let body = String::from_utf8_lossy(&body).into_owned();
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|_| ClientError::Protocol(body.clone()))?;
    if status >= 400 {
        let message = json["error"]["message"]
            .as_str()
            .map_or_else(|| body.clone(), str::to_string);
        return Err(ClientError::Refused(message));
    }
    Ok(json)
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[tokio::test]
    async fn the_socket_is_private_and_nothing_else_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A world-enterable directory: the socket's own mode is what keeps others out.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = socket_path(dir.path());
        let listener = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["control.sock"], "the staging directory is removed");

        // The renamed socket still answers at its final path.
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted.unwrap();
        connected.unwrap();

        // A live socket is not replaced; a stale one (the listener gone) is.
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(listener);
        let again = bind(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(again);
    }
}
