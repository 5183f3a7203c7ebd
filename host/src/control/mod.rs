//! The operator's local control plane: the CyxWiz `DaemonService` (daemon.proto) served with
//! tonic on the Unix socket `control.sock` in the data directory, and the client the CLI dials
//! it with. The socket is mode 0600 inside a 0700 data directory, and every connection's peer
//! uid (`SO_PEERCRED`) must be the node's effective uid before any RPC runs ([`peer`]).
//! The RPCs themselves are in [`service`] (training jobs' in [`jobs`]); message conversions
//! in [`convert`]; `SetConfig`'s file edit in [`settings`]; the dialling client in [`client`].

mod checks;
pub mod client;
mod config;
pub mod convert;
mod deployments;
pub mod jobs;
mod keys;
pub mod peer;
pub mod service;
pub mod settings;
mod system;

use cyxwiz_proto::daemon::daemon_service_server::DaemonServiceServer;
use std::{
    future::Future,
    path::{Path, PathBuf},
};

pub use service::{ControlContext, ControlService};

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Largest control message either way (a deployment list, a log page), except job
/// submissions, which may carry an inline dataset ([`ControlService::max_request_bytes`]).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The largest request the CLI sends (a job with the largest inline dataset config allows).
pub const MAX_CLIENT_REQUEST_BYTES: usize = (1 << 30) + (2 << 20);

/// Serves `DaemonService` on an already-bound listener until `shutdown` completes. Peers
/// whose uid is not `uid` are logged and dropped before the HTTP/2 handshake.
pub async fn serve(
    listener: tokio::net::UnixListener,
    uid: u32,
    service: ControlService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let max_request = service.max_request_bytes();
    let server = DaemonServiceServer::new(service)
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(peer::incoming(listener, uid), shutdown)
        .await
}

/// Binds the control socket, replacing a stale one. The socket is mode 0600 from the moment it
/// appears at `path`: it is bound inside a fresh 0700 directory beside `path` (nobody else can
/// reach it there), made 0600, then renamed into place; a bound Unix socket is its inode, so
/// the listener stays reachable under the new name. A umask around `bind` would do the same,
/// but the umask is process-wide and other threads (the plugin loader, the sampler, tokio's
/// workers) may be creating files and directories at this moment.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
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
        .unwrap_or(Path::new("."));
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
fn private_dir(parent: &Path) -> std::io::Result<PathBuf> {
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
