//! Plugin libraries stay out of the node's process until a model needs them: discovery reads
//! metadata in child probes (the node maps no plugin library and no libtorch at start), keeps
//! the answers in `<data dir>/plugin-cache.json` (a second start probes nothing; a changed
//! library or changed `[runtimes]` options are probed again), and a library that hangs or
//! crashes while loading is a failed entry while the node starts anyway.

mod common;

use common::{classifier, plugin_lib, stderr, stdout, Node};
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime},
};

/// The plugin libraries (and libtorch) mapped into process `pid`, by file name.
fn mapped_plugins(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut names: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| Path::new(p).file_name()?.to_str().map(str::to_string))
        .filter(|n| n.starts_with("libcyxwiz_plugin_") || n.starts_with("libtorch"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `probed` and `cached` from the "plugin metadata read" log line of a command's stderr.
fn probe_counts(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains("plugin metadata read"))
        .unwrap_or_else(|| panic!("no `plugin metadata read` line in:\n{log}"));
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    };
    (field("probed"), field("cached"))
}

/// `plugins list --json` with info logs; returns the rows and the log.
fn list(node: &Node, env: &[(&str, &str)]) -> (Vec<Value>, String) {
    let mut command = node.command();
    command
        .args(["plugins", "list", "--json"])
        .env("CYXWIZ_LOG_LEVEL", "info")
        .current_dir(node.data_dir());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (serde_json::from_str(&stdout(&out)).unwrap(), stderr(&out))
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {rows:?}"))
}

#[test]
fn a_started_node_maps_no_plugin_until_a_model_needs_one() {
    // The real plugins next to the binary, libtorch's among them.
    plugin_lib("cyxwiz_plugin_torch_tch");
    plugin_lib("cyxwiz_plugin_onnx_tract");
    let node = Node::new();
    let (rows, _) = list(&node, &[]);
    for name in [
        "onnx-tract",
        "onnx-ort",
        "gguf-llama",
        "torch-tch",
        "train-candle",
    ] {
        assert_eq!(row(&rows, name)["status"], "loaded", "{name}");
    }

    let running = node.start(&[]);
    let (status, health) = running.get_json("/health");
    assert_eq!(status, 200, "{health}");
    assert!(
        health["plugins"]["loaded"].as_u64().unwrap() >= 5,
        "{health}"
    );
    assert_eq!(
        mapped_plugins(running.child.id()),
        Vec::<String>::new(),
        "no plugin library (nor libtorch) in the node's process before a model loads"
    );

    let path = classifier();
    let out = node.cli(&[
        "deploy",
        path.to_str().unwrap(),
        "--name",
        "cls",
        "--plugin",
        "onnx-tract",
        "--options",
        r#"{"input_shapes": {"x": [-1, 3, 48, 192]}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        mapped_plugins(running.child.id()),
        vec!["libcyxwiz_plugin_onnx_tract.so".to_string()],
        "loading an ONNX model with onnx-tract opens that plugin alone"
    );
}

#[test]
fn probe_answers_are_cached_until_the_library_or_its_options_change() {
    let node = Node::new();
    let copy = node.plugins_dir().join("libscale-copy.so");
    std::fs::copy(plugin_lib("cyxwiz_plugin_example_scale"), &copy).unwrap();

    let (first, log) = list(&node, &[]);
    let (probed, cached) = probe_counts(&log);
    assert!(probed >= 2 && cached == 0, "{log}");
    assert!(node.data_dir().join("plugin-cache.json").is_file());
    let copied = first
        .iter()
        .find(|r| r["path"] == copy.to_str().unwrap())
        .unwrap();
    assert_eq!(copied["name"], "example-scale", "{copied}");

    // Nothing changed: no probe, the same listing (runtime lines included).
    let (second, log) = list(&node, &[]);
    assert_eq!(probe_counts(&log), (0, probed), "{log}");
    assert_eq!(first, second);

    // The library file changed (a new modification time): that one is probed again.
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    let (third, log) = list(&node, &[]);
    assert_eq!(probe_counts(&log), (1, probed - 1), "{log}");
    assert_eq!(first, third);

    // New `[runtimes.example-scale]` options: both libraries of that plugin again.
    node.write_config("[runtimes.example-scale]\nnote = \"changed\"\n");
    let (_, log) = list(&node, &[]);
    assert_eq!(probe_counts(&log), (2, probed - 2), "{log}");
    let (_, log) = list(&node, &[]);
    assert_eq!(probe_counts(&log), (0, probed), "{log}");
}

/// Builds a shared library from C `source` into `dir/name` with the system compiler.
fn build_c_library(dir: &Path, name: &str, source: &str) {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join(name))
        .arg(&src)
        .output()
        .expect("a C compiler (`cc`, Debian's gcc)");
    assert!(out.status.success(), "cc failed: {}", stderr(&out));
    std::fs::remove_file(&src).unwrap();
}

/// Starts `cyxwiz-node run` with `env` added and waits until it listens; returns the child
/// and its log so far.
fn start_with(node: &Node, env: &[(&str, &str)]) -> (Child, Vec<String>) {
    let mut command = node.command();
    command
        .args(["run", "--api-port", "0", "--log-format", "text"])
        .env("CYXWIZ_LOG_LEVEL", "info")
        .current_dir(node.data_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let listening = line.contains("listening on http://");
                log.push(line);
                if listening {
                    return (child, log);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("node did not start listening:\n{}", log.join("\n"));
}

#[test]
fn a_library_that_hangs_or_crashes_while_loading_is_failed_and_the_node_starts() {
    let node = Node::new();
    let dir = node.plugins_dir();
    build_c_library(
        &dir,
        "libhangs.so",
        "#include <unistd.h>\n__attribute__((constructor)) static void hang(void) { for (;;) pause(); }\n",
    );
    build_c_library(
        &dir,
        "libcrashes.so",
        "#include <stdlib.h>\n__attribute__((constructor)) static void crash(void) { abort(); }\n",
    );
    let env = [("CYXWIZ_PLUGIN_PROBE_TIMEOUT", "2")];

    let (rows, log) = list(&node, &env);
    let failed = |file: &str| {
        let path = dir.join(file);
        rows.iter()
            .find(|r| r["path"] == path.to_str().unwrap())
            .unwrap_or_else(|| panic!("{file} not listed: {rows:?}"))
            .clone()
    };
    let hangs = failed("libhangs.so");
    assert_eq!(hangs["status"], "failed", "{hangs}");
    assert!(
        hangs["reason"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{hangs}"
    );
    let crashes = failed("libcrashes.so");
    assert_eq!(crashes["status"], "failed", "{crashes}");
    assert!(
        crashes["reason"].as_str().unwrap().contains("SIGABRT"),
        "{crashes}"
    );
    assert_eq!(row(&rows, "onnx-tract")["status"], "loaded", "{log}");

    // The daemon: the same two failed entries, the others usable, and it serves.
    let (mut child, log) = start_with(&node, &env);
    let skipped = log
        .iter()
        .filter(|l| {
            l.contains("plugin skipped") && (l.contains("libhangs") || l.contains("libcrashes"))
        })
        .count();
    assert_eq!(skipped, 2, "{}", log.join("\n"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the node keeps running"
    );
    let _ = child.kill();
    let _ = child.wait();
}
