//! Who may use the control socket: on every accepted connection the peer's uid, read with
//! `SO_PEERCRED`, must equal the node's effective uid. Others are logged and dropped before a
//! byte of gRPC is read, so no RPC ever runs for them. The socket's 0600 mode inside a 0700
//! directory keeps other users out already; this check also holds when an operator loosens
//! those modes or hands the socket to another process.

use futures_util::Stream;
use tokio::net::{UnixListener, UnixStream};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The kernel did not say who connected.
    #[error("cannot read the peer's credentials: {0}")]
    Credentials(std::io::Error),
    /// Another user connected.
    #[error("peer uid {uid} (pid {pid}) is not the node's uid {expected}")]
    Foreign {
        /// The peer's uid.
        uid: u32,
        /// The peer's pid, or -1 if unknown.
        pid: i32,
        /// The node's effective uid.
        expected: u32,
    },
}

/// The node's effective uid, the only one allowed on the socket.
pub fn node_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that the process at the other end of `stream` runs as `expected`.
pub fn check(stream: &UnixStream, expected: u32) -> Result<(), PeerError> {
    let cred = stream.peer_cred().map_err(PeerError::Credentials)?;
    if cred.uid() != expected {
        return Err(PeerError::Foreign {
            uid: cred.uid(),
            pid: cred.pid().unwrap_or(-1),
            expected,
        });
    }
    Ok(())
}

/// The connections of `listener` whose peer passes [`check`] against `uid`; refused ones are
/// logged (warn) and closed. An accept error (e.g. out of file descriptors) is logged and
/// retried after a short pause, so the socket keeps serving.
pub fn incoming(
    listener: UnixListener,
    uid: u32,
) -> impl Stream<Item = Result<UnixStream, std::io::Error>> {
    futures_util::stream::unfold(listener, move |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match check(&stream, uid) {
                    Ok(()) => return Some((Ok(stream), listener)),
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: connection refused");
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_peer_of_another_uid_is_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        check(&a, node_uid()).unwrap();
        let other = node_uid().wrapping_add(1);
        match check(&a, other) {
            Err(PeerError::Foreign { uid, expected, pid }) => {
                assert_eq!(uid, node_uid());
                assert_eq!(expected, other);
                assert_eq!(pid, i32::try_from(std::process::id()).unwrap());
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn refused_connections_are_closed_and_never_yielded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        // Nobody may connect: this process's connection is "another user's".
        let mut accepted = Box::pin(incoming(listener, node_uid().wrapping_add(1)));
        let mut client = UnixStream::connect(&path).await.unwrap();
        let next = tokio::time::timeout(Duration::from_millis(300), accepted.next()).await;
        assert!(
            next.is_err(),
            "a refused connection was handed to the server"
        );
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf))
            .await
            .expect("the refused connection is closed at once");
        assert_eq!(read.unwrap(), 0, "EOF");

        // The node's own uid gets through.
        let path2 = dir.path().join("t");
        let mut allowed = Box::pin(incoming(UnixListener::bind(&path2).unwrap(), node_uid()));
        let _client = UnixStream::connect(&path2).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), allowed.next()).await;
        assert!(matches!(got, Ok(Some(Ok(_)))));
    }

    /// Run as root (the test machine), a process of another uid reaches a world-writable
    /// socket and is still refused by the peer check.
    #[tokio::test]
    async fn another_user_process_is_refused_when_running_as_root() {
        use std::os::unix::{fs::PermissionsExt, process::CommandExt};
        if node_uid() != 0 {
            eprintln!("skipped: needs root to run a process as another uid");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut accepted = Box::pin(incoming(listener, node_uid()));
        // nobody (65534) connects, sends a byte and reports what it reads back: "" = EOF.
        let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                      s.settimeout(5)\ntry:\n    s.sendall(b'x'); print(repr(s.recv(1)))\n\
                      except OSError as e:\n    print('error', e)\n";
        let socket = path.clone();
        let child = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(&socket)
                .uid(65534)
                .gid(65534)
                .output()
        });
        let (out, next) = tokio::join!(
            child,
            tokio::time::timeout(Duration::from_secs(3), accepted.next())
        );
        let out = out.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.trim() == "b''" || text.contains("reset") || text.contains("Broken pipe"),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(next.is_err(), "the other user's connection was served");
    }
}
