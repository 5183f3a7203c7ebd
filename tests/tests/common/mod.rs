//! Shared helpers for the end-to-end tests: where the built binary, plugins and models are,
//! running the CLI in a scratch data directory, and a running node with its HTTP port.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// `target/<profile>/`, where `cargo build` put the binary and the plugin libraries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("cyxwiz-node").is_file(),
        "{}/cyxwiz-node is missing: run `cargo build --workspace` before the tests (scripts/test does)",
        dir.display()
    );
    dir
}

pub fn node_bin() -> PathBuf {
    target_dir().join("cyxwiz-node")
}

pub fn plugin_lib(crate_name: &str) -> PathBuf {
    let path = target_dir().join(format!("lib{crate_name}.so"));
    assert!(
        path.is_file(),
        "{} missing: run `cargo build --workspace`",
        path.display()
    );
    path
}

/// The real models fetched by `scripts/fetch-models.py`.
pub fn models_dir() -> PathBuf {
    let dir = cyxwiz_e2e::models_dir();
    assert!(
        dir.join("onnx-light").is_dir(),
        "models missing in {}: run scripts/fetch-models.py",
        dir.display()
    );
    dir
}

pub fn classifier() -> PathBuf {
    models_dir().join("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

/// Runs `pytest` on `target` (a path from the workspace root) in the tests' venv with the
/// environment `env`; fails the calling test with pytest's output unless every test passed.
pub fn pytest(target: &str, env: &[(&str, &dyn AsRef<std::ffi::OsStr>)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new(venv_python());
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", target])
        .current_dir(&root);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    println!("{}", stdout(&out));
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A scratch data directory with its own plugin dir, isolated from the user's.
pub struct Node {
    pub data: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Self {
        Self {
            data: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn plugins_dir(&self) -> PathBuf {
        let dir = self.data.path().join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.data.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A command for the node binary with this data directory and a clean environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(node_bin());
        for (key, _) in std::env::vars() {
            if key.starts_with("CYXWIZ_") || key == "RUST_BACKTRACE" {
                cmd.env_remove(key);
            }
        }
        // gRPC off unless a test asks for ports: parallel nodes would fight over the defaults.
        cmd.env("CYXWIZ_DATA_DIR", self.data.path())
            .env("CYXWIZ_GRPC_PORTS", "off")
            .env("NO_COLOR", "1");
        cmd
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Starts `cyxwiz-node run` on a free port and waits until it listens.
    pub fn start(&self, extra: &[&str]) -> Running {
        let mut child = self
            .command()
            .args(["run", "--api-port", "0", "--log-format", "text"])
            .args(extra)
            .env("CYXWIZ_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut log = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let addr = line
                        .split("listening on http://")
                        .nth(1)
                        .or_else(|| line.split("listening on https://").nth(1));
                    if let Some(addr) = addr {
                        let addr = addr.trim().to_string();
                        log.push(line);
                        return Running {
                            child,
                            addr,
                            log,
                            lines: rx,
                        };
                    }
                    log.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("node did not start listening:\n{}", log.join("\n"));
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) to `addr` and reads the whole answer;
/// returns status, head and body.
fn exchange(addr: &str, request: &str, timeout: Duration) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// POSTs JSON to `addr` (with a bearer `key` if given); returns status, head and body.
pub fn post_full(addr: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String, String) {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &request, Duration::from_secs(120))
}

/// A free TCP port on loopback (for listeners the node binds itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running node process.
pub struct Running {
    pub child: Child,
    pub addr: String,
    pub log: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// A plain HTTP/1.1 GET; returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let (status, _, body) = exchange(&self.addr, &request, Duration::from_secs(30));
        (status, body)
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, json)
    }

    /// Log lines printed since start (drains what arrived).
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Config lines that make ONNX models load through ONNX Runtime (the library fetched by
/// `scripts/fetch-models.py`), falling back to tract.
pub fn prefer_onnx_runtime() -> String {
    format!(
        "[plugins.preference]\nonnx = [\"onnx-ort\", \"onnx-tract\"]\n\n[runtimes.onnx-ort]\nlibrary = \"{}\"\n",
        models_dir()
            .join("runtimes/onnxruntime/libonnxruntime.so.1.31.1")
            .display()
    )
}

/// The test venv's python (`CYXWIZ_VENV`, default `~/.cache/cyxwiz-venv`).
#[allow(unused_imports)] // not every test binary talks to Python
pub use cyxwiz_e2e::venv_python;

/// A config serving chat, embeddings and a tensor model.
pub fn serving_config(require_auth: bool) -> String {
    let models = models_dir();
    format!(
        r#"
[api]
require_auth = {require_auth}

{ort}
[[deployments]]
name = "chat"
aliases = ["smollm2"]
path = "{gguf}"
threads = 2
options = {{ slots = 4, context_length = 2048 }}

[[deployments]]
name = "embed"
path = "{minilm}"

[[deployments]]
name = "classifier"
path = "{cls}"
plugin = "onnx-tract"
options = {{ input_shapes = {{ x = [-1, 3, 48, 192] }} }}
"#,
        ort = prefer_onnx_runtime(),
        gguf = models
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            .display(),
        minilm = models.join("minilm").display(),
        cls = classifier().display(),
    )
}

/// Waits until `/health` says every model is ready.
pub fn wait_ready(running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = running.get_json("/health");
        if status == 200 {
            assert_eq!(body["status"], "ok", "a model failed to load: {body}");
            return;
        }
        assert!(Instant::now() < deadline, "models never loaded: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
