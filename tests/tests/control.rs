//! The control socket end to end: the CLI's `status`, `keys …` and `deployments list` go
//! through `DaemonService` on the running node; a Python grpcio client calls GetStatus and
//! StreamMetrics (and Shutdown) over the socket; a process of another uid that reaches the
//! socket is dropped before any RPC (when the test runs as root and can become `nobody`).

mod common;

use common::{stderr, stdout, Node};
use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

fn node_config(name: &str) -> String {
    format!("[node]\nname = \"{name}\"\n\n[metrics]\ninterval_seconds = 1\n")
}

#[test]
fn cli_and_python_client_use_daemon_service() {
    let node = Node::new();
    node.write_config(&node_config("ctl-node"));
    let mut running = node.start(&[]);
    let socket = node.data_dir().join("control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // status through GetStatus, in the same JSON shape as before.
    let out = node.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["node"]["name"], "ctl-node");
    assert_eq!(status["central"]["state"], "standalone");
    assert_eq!(status["deployments"]["total"], 0);
    assert!(status["node"]["uptime_seconds"].as_i64().is_some());

    // keys through the node: created, listed with its scopes, revoked; refusals are one line
    // of their kind.
    let out = node.cli(&[
        "keys",
        "create",
        "--name",
        "ops",
        "--scopes",
        "inference,deploy",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("cyx-") && key.len() == 68, "{key}");
    let dup = node.cli(&["keys", "create", "--name", "ops"]);
    assert!(!dup.status.success());
    let line = stderr(&dup);
    assert!(
        line.starts_with("error (already exists): a key named `ops` already exists")
            && line.lines().count() == 1,
        "{line}"
    );
    let out = node.cli(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(keys[0]["name"], "ops");
    assert_eq!(
        keys[0]["scopes"],
        serde_json::json!(["inference", "deploy"])
    );
    assert_eq!(keys[0]["revoked_at"], serde_json::Value::Null);
    assert!(keys[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let table = stdout(&node.cli(&["keys", "list"]));
    assert!(table.starts_with("PREFIX"), "{table}");
    assert!(
        table.contains("inference,deploy") && table.contains("active"),
        "{table}"
    );
    let out = node.cli(&["keys", "revoke", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = node.cli(&["keys", "revoke", "ops"]);
    assert!(stderr(&gone).starts_with("error (not found): no active key named `ops`"));
    let list = stdout(&node.cli(&["deployments", "list"]));
    assert_eq!(list.trim(), "no deployments");

    // A process of another uid that reaches the socket is refused before any RPC.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } == 0 {
        std::fs::set_permissions(node.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        // It prints what came back: b'' (closed), or "closed" if the close beat its write.
        let probe = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                     s.settimeout(5)\ntry:\n    s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n')\n\
                     \x20   print(repr(s.recv(64)))\nexcept (BrokenPipeError, ConnectionResetError):\n\
                     \x20   print('closed')\n";
        let out = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("/usr/bin/python3")
                .args(["-c", probe])
                .arg(&socket)
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap()
        };
        let text = stdout(&out);
        assert!(
            text.trim() == "b''" || text.trim() == "closed",
            "the other user got an answer: {text} {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
        let log = running.drain_log().join("\n");
        assert!(
            log.contains("control socket: connection refused") && log.contains("uid 65534"),
            "{log}"
        );
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    } else {
        eprintln!("not root: the other-uid check is covered by control::peer's unit tests");
    }

    // A second-language client: GetStatus, StreamMetrics, logs, bounds, then Shutdown.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    common::pytest(
        "tests/grpc_python/test_control.py",
        &[
            ("CYXWIZ_CONTROL_SOCKET", &socket),
            ("CYXWIZ_NODE_NAME", &"ctl-node"),
            ("CYXWIZ_PROTO_DIR", &root.join("proto/proto")),
        ],
    );
    // Shutdown stopped the node cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");

    // Without a node, keys work on the database and the node commands fail in one line.
    let out = node.cli(&["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(keys[0]["revoked_at"].as_str().is_some(), "{keys}");
    let out = node.cli(&["status"]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.starts_with("error: cannot reach the running node")
            && err.lines().count() == 1,
        "{err}"
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
