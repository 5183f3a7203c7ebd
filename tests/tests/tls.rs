//! HTTPS: `[api.tls]` with a self-signed certificate made by `openssl` for this test; a
//! client that trusts it gets answers, one that does not fails the handshake, and a missing
//! key file is a one-line startup error.

mod common;

use common::{stderr, venv_python, Node};
use std::process::Command;

#[test]
fn the_api_serves_https_with_the_configured_certificate() {
    let node = Node::new();
    let dir = node.data_dir();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", stderr(&made));
    node.write_config(&format!(
        "[api.tls]\nenabled = true\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let running = node.start(&[]);
    assert!(
        running
            .log
            .iter()
            .any(|l| l.contains("listening on https://")),
        "{:?}",
        running.log
    );
    let url = format!("https://{}/health", running.addr);
    let script = "import sys, httpx\n\
        ok = httpx.get(sys.argv[1], verify=sys.argv[2]).json()['status']\n\
        try:\n    httpx.get(sys.argv[1]); print('untrusted accepted')\n\
        except httpx.ConnectError: print('untrusted refused')\n\
        print(ok)\n";
    let out = Command::new(venv_python())
        .args(["-c", script, &url, cert.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert_eq!(text.trim(), "untrusted refused\nok");
    assert!(running.stop().success());

    // A missing key file stops the node at start with one line naming it.
    std::fs::remove_file(&key).unwrap();
    let out = node
        .command()
        .args(["run", "--api-port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error:") && last.contains("TLS private key") && last.contains("key.pem"),
        "{err}"
    );
}
