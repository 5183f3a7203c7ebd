//! The CLI's side of the control socket: a tonic `DaemonServiceClient` dialled over the Unix
//! socket with a custom connector, and the one-line error the CLI prints when it fails.

use cyxwiz_proto::daemon::daemon_service_client::DaemonServiceClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint};

/// The generated client on the control socket.
pub type Client = DaemonServiceClient<Channel>;

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens there (or it refused this user).
    #[error("cannot reach the running node at {path}: {reason} (is `cyxwiz-node run` running with this data directory?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Dials the daemon's control socket at `socket`.
pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
    let path = socket.to_path_buf();
    let fail = |reason: String| ClientError::Connect {
        path: path.clone(),
        reason,
    };
    // Fail fast with the OS's reason when nothing listens (the channel would only say
    // "transport error").
    if let Err(e) = tokio::net::UnixStream::connect(socket).await {
        return Err(fail(e.to_string()));
    }
    // The URI is required by the API but unused: every connection goes to the socket.
    let endpoint = Endpoint::from_static("http://control.sock")
        .connect_timeout(std::time::Duration::from_secs(5));
    let dial = path.clone();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let dial = dial.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(dial).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            fail(reason)
        })?;
    Ok(DaemonServiceClient::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_CLIENT_REQUEST_BYTES))
}
