//! Network mode over TLS against the test coordinator: a certificate from a private CA made by
//! `openssl` for the test, trusted through `ca_file`, the token read from `auth_token_file`, and
//! the node's files private to its user; an untrusted or misnamed certificate never receives
//! the token. Real node binary, real gRPC on loopback.

mod central_common;
mod common;
mod coordinator;

use central_common::{free_port_pair, start_node, start_node_with, wait_status};
use common::{stderr, Node};
use coordinator::{Coordinator, Seen};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// A private CA and a server certificate it signed for `central.test` only (no IP), made with
/// `openssl` in `dir`: returns (CA certificate path, server identity).
fn private_ca(dir: &std::path::Path) -> (std::path::PathBuf, tonic::transport::Identity) {
    // Every argument is free of spaces, so each command is written as one line.
    let run = |command: &str| {
        let out = std::process::Command::new("openssl")
            .args(command.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {command}: {}", stderr(&out));
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "req -x509 {ec} -days 1 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem"
    ));
    run(&format!(
        "req {ec} -subj /CN=central.test -keyout server.key -out server.csr"
    ));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:central.test\nbasicConstraints=critical,CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile server.ext -out server.pem",
    );
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
    );
    (dir.join("ca.pem"), identity)
}

fn tls_config(central: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[node]
name = "over-tls"
wallet_address = "wallet-tls-1"

[central_server]
address = "https://{central}"
heartbeat_interval_seconds = 1
reconnect_delay_seconds = 1
{extra}

[grpc]
host = "127.0.0.1"
"#
    )
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_over_tls_with_a_private_ca_and_a_token_file() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, identity) = private_ca(certs.path());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tls-token",
        seen.clone(),
        identity,
    )
    .await;
    let node = Node::new();
    // Relative paths in the config are relative to the config file.
    std::fs::copy(&ca, node.data_dir().join("ca.pem")).unwrap();
    let token = node.data_dir().join("token");
    std::fs::write(&token, "tls-token\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        // As an older node left it: the node tightens it.
        std::fs::set_permissions(node.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    node.write_config(&tls_config(
        central.addr,
        "ca_file = \"ca.pem\"\nauth_token_file = \"token\"\ntls_server_name = \"central.test\"",
    ));
    let running = start_node(&node, free_port_pair()).await;
    central
        .wait_for("a registration over TLS", Duration::from_secs(20), |s| {
            s.nodes.values().any(|n| n.heartbeats.len() >= 2)
        })
        .await;
    let reg = seen.lock().unwrap().registrations[0].clone();
    assert_eq!(
        reg.authentication_token, "tls-token",
        "the token file's, trimmed"
    );
    assert_eq!(seen.lock().unwrap().refused, 0);
    wait_status(&node, "connected", |s| s["central"]["state"] == "connected").await;
    assert!(
        !running
            .log
            .iter()
            .any(|l| l.contains("unencrypted") || l.contains("other users")),
        "no security warning for a TLS link and a private token file: {:?}",
        running.log
    );

    // What the node keeps on disk is private to its user.
    let data = node.data_dir();
    assert_eq!(mode(data), 0o700, "data directory");
    assert_eq!(mode(&data.join("node.db")), 0o600, "node.db");
    for companion in ["node.db-wal", "node.db-shm"] {
        if data.join(companion).exists() {
            assert_eq!(mode(&data.join(companion)), 0o600, "{companion}");
        }
    }
    assert_eq!(mode(&data.join("control.sock")), 0o600, "control socket");
    drop(running);
    central.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_misnamed_certificate_never_receives_the_token() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, identity) = private_ca(certs.path());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut central = Coordinator::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tls-token",
        seen.clone(),
        identity,
    )
    .await;
    let node = Node::new();
    // The system's roots do not include the test CA: the handshake fails, so the token given
    // on the command line (warned about) is never sent.
    node.write_config(&tls_config(
        central.addr,
        "tls_server_name = \"central.test\"",
    ));
    let running = start_node_with(&node, free_port_pair(), &["--auth-token", "tls-token"]).await;
    assert!(
        running
            .log
            .iter()
            .any(|l| l.contains("--auth-token") && l.contains("other users")),
        "{:?}",
        running.log
    );
    let st = wait_status(&node, "a refused certificate", |s| {
        s["central"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    })
    .await;
    assert_eq!(st["central"]["state"], "disconnected", "{st}");
    tokio::task::block_in_place(|| running.stop());

    // Trusting the CA but dialling 127.0.0.1 without the name override: the certificate is
    // for central.test only, so the name check fails.
    node.write_config(&tls_config(
        central.addr,
        &format!("ca_file = \"{}\"\nauth_token = \"tls-token\"", ca.display()),
    ));
    let running = start_node(&node, free_port_pair()).await;
    let st = wait_status(&node, "a misnamed certificate", |s| {
        s["central"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate") && e.contains("central.test"))
    })
    .await;
    assert_eq!(st["central"]["state"], "disconnected", "{st}");
    drop(running);
    {
        let s = seen.lock().unwrap();
        assert!(s.registrations.is_empty() && s.refused == 0, "{s:?}");
    }
    central.kill().await;
}
