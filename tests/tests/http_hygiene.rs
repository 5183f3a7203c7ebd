//! The HTTP server's network hygiene on the real binary, each check written as the attack
//! with the safe answer expected, and the node healthy afterwards: a client that sends half
//! a header is cut off, a `text/plain` POST (what any web page may send) is refused, a
//! DNS-rebound `Host` is refused, `/health` tells a caller without a key nothing but the
//! status, and SIGTERM ends within the shutdown grace despite a slow client.

mod common;

use common::{stderr, stdout, Node, Running};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// Sends `request` as is; returns the whole answer (the server closes, or 20 s pass).
fn raw(running: &Running, request: &str) -> String {
    let mut stream = TcpStream::connect(&running.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(content_type: &str, host: &str) -> String {
    let body = r#"{"model":"none","input":"x"}"#;
    format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn slow_clients_cross_site_requests_and_health_details_on_a_running_node() {
    let node = Node::new();
    node.write_config(
        "[api]\nheader_timeout_seconds = 1\nbody_timeout_seconds = 2\n\
         shutdown_grace_seconds = 1\nmax_connections = 64\n\n\
         [[deployments]]\nname = \"secret-model\"\npath = \"/srv/secret/missing.onnx\"\n",
    );
    let running = node.start(&[]);

    // Half a header: the connection is closed after the header timeout, nothing answered.
    let started = Instant::now();
    let answer = raw(&running, "GET /health HTTP/1.1\r\nHost: local");
    assert_eq!(answer, "");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A web page's form or `text/plain` fetch: 415, OpenAI-shaped.
    let answer = raw(&running, &post("text/plain", "localhost"));
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(answer.contains("\"unsupported_media_type\""), "{answer}");
    // The same as JSON reaches the API (the model does not exist).
    let answer = raw(&running, &post("application/json", "localhost"));
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // DNS rebinding: the page's own name arrives as Host. 403.
    let answer = raw(
        &running,
        &post("application/json", "rebind.attacker.example"),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("allowed_hosts"), "{answer}");

    // Keys are not required on this loopback node: /health has the details.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (status, health) = running.get_json("/health");
        if status == 200 {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "never finished loading: {health}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["models"][0]["name"], "secret-model");

    // SIGTERM with a slow client connected: the node ends within the grace.
    let mut slow = TcpStream::connect(&running.addr).unwrap();
    slow.write_all(b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let started = Instant::now();
    assert!(running.stop().success());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn health_hides_model_paths_from_callers_without_a_key() {
    let node = Node::new();
    node.write_config(
        "[api]\nrequire_auth = true\n\n\
         [[deployments]]\nname = \"secret-model\"\npath = \"/srv/secret/missing.onnx\"\n",
    );
    let out = node.cli(&["keys", "create", "--name", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let running = node.start(&[]);
    let health = |auth: &str| {
        let answer = raw(
            &running,
            &format!("GET /health HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"),
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (answer, body)
    };
    // Wait until loading is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while health("").0.starts_with("HTTP/1.1 503") {
        assert!(Instant::now() < deadline, "never finished loading");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The probe without a key, or with a wrong one: the status, nothing else.
    for auth in ["", "Authorization: Bearer cyx-guess\r\n"] {
        let (answer, body) = health(auth);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "degraded", "{json}");
        for leak in ["/srv/secret", "secret-model", "\"models\"", "\"plugins\""] {
            assert!(!body.contains(leak), "{leak} leaked: {body}");
        }
    }
    // The operator's key: the details.
    let (_, body) = health(&format!("Authorization: Bearer {key}\r\n"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["models"][0]["name"], "secret-model", "{json}");
    assert!(json["models"][0]["message"].is_string(), "{json}");
    assert!(running.stop().success());
}
