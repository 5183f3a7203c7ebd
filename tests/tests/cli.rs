//! The `cyxwiz-node` command line against the real plugins and models: plugin listing with
//! broken libraries, one-shot inference, hostile model files, configuration errors and
//! provenance.

mod common;

use common::{classifier, models_dir, stderr, stdout, Node};
use serde_json::Value;

fn assert_one_line_error(out: &std::process::Output, expect: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure for {expect}: {}",
        stdout(out)
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(expect), "`{expect}` not in: {err}");
    assert!(
        !err.contains("panicked at") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn plugins_list_shows_real_plugins_and_skips_broken_libraries() {
    let node = Node::new();
    let dir = node.plugins_dir();
    std::fs::write(dir.join("libgarbage.so"), b"this is not an ELF file at all").unwrap();
    // A real shared library that is not a plugin.
    let foreign = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .expect("libz from Debian's zlib1g");
    std::fs::copy(foreign, dir.join("libforeign.so")).unwrap();

    let out = node.cli(&["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let by_name = |name: &str| rows.iter().find(|r| r["name"] == name).cloned();
    let tract = by_name("onnx-tract").expect("onnx-tract listed");
    assert_eq!(tract["status"], "loaded");
    assert_eq!(tract["formats"][0]["extensions"][0], "onnx");
    assert_eq!(tract["capabilities"][0], "tensor_inference");
    assert_eq!(by_name("example-scale").unwrap()["status"], "loaded");
    for name in [
        "onnx-ort",
        "tflite-litert",
        "tflite-tract",
        "torch-tch",
        "test-panic",
    ] {
        assert_eq!(by_name(name).unwrap()["status"], "loaded", "{name}");
    }
    let llama = by_name("gguf-llama").expect("gguf-llama listed");
    assert_eq!(llama["status"], "loaded");
    assert_eq!(
        llama["capabilities"],
        serde_json::json!(["text_generation", "embeddings"])
    );
    let failed = |file: &str| {
        rows.iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file} not listed"))
            .clone()
    };
    let garbage = failed("libgarbage.so");
    assert_eq!(garbage["status"], "failed");
    assert!(
        garbage["reason"]
            .as_str()
            .unwrap()
            .contains("cannot load library"),
        "{garbage}"
    );
    let foreign = failed("libforeign.so");
    assert_eq!(foreign["status"], "failed");
    assert!(
        foreign["reason"]
            .as_str()
            .unwrap()
            .contains("not a cyxwiz plugin"),
        "{foreign}"
    );

    let table = stdout(&node.cli(&["plugins", "list"]));
    assert!(
        table.contains("onnx-tract") && table.contains("loaded"),
        "{table}"
    );
    assert!(
        table.contains("libgarbage") && table.contains("failed"),
        "{table}"
    );
}

fn classifier_input(node: &Node, batch: usize) -> String {
    let n = batch * 3 * 48 * 192;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let input =
        serde_json::json!({"x": {"dtype": "float32", "shape": [batch, 3, 48, 192], "data": data}});
    let path = node.data_dir().join("input.json");
    std::fs::write(&path, input.to_string()).unwrap();
    format!("@{}", path.display())
}

#[test]
fn infer_runs_a_real_model_and_prints_json() {
    let node = Node::new();
    let model = classifier();
    let input = classifier_input(&node, 2);
    let out = node.cli(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &input,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "onnx-tract");
    let output = json["outputs"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(output["shape"], serde_json::json!([2, 2]));
    let p: Vec<f64> = output["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for row in p.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-4, "{row:?}");
    }
}

#[test]
fn hostile_inputs_give_one_line_errors() {
    let node = Node::new();
    let dir = node.data_dir();
    let good = serde_json::json!({"x": [1.0]}).to_string();
    let real = std::fs::read(models_dir().join("onnx-light/light_squeezenet.onnx")).unwrap();
    std::fs::write(dir.join("empty.onnx"), b"").unwrap();
    std::fs::write(dir.join("truncated.onnx"), &real[..real.len() / 3]).unwrap();
    let noise: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("random.onnx"), noise).unwrap();
    std::fs::write(dir.join("model.gguf"), b"GGUF\x03\0\0\0").unwrap();
    std::fs::write(dir.join("weights.xyz"), b"0123").unwrap();
    std::fs::create_dir_all(dir.join("folder.onnx")).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();

    let cases: Vec<(String, String, &str)> = vec![
        (path("missing.onnx"), good.clone(), "no such file"),
        (path("empty.onnx"), good.clone(), "not a valid ONNX model"),
        (
            path("truncated.onnx"),
            good.clone(),
            "not a valid ONNX model",
        ),
        (path("random.onnx"), good.clone(), "not a valid ONNX model"),
        (path("folder.onnx"), good.clone(), "is a directory"),
        (
            path("model.gguf"),
            good.clone(),
            "not a GGUF model: only 8 bytes",
        ),
        (
            path("weights.xyz"),
            good.clone(),
            "no plugin handles `xyz` files",
        ),
        (
            classifier().to_string_lossy().into_owned(),
            "{not json".into(),
            "--input is not valid JSON",
        ),
        (
            classifier().to_string_lossy().into_owned(),
            r#"{"nope": [1.0]}"#.into(),
            "unknown input `nope`",
        ),
        (
            classifier().to_string_lossy().into_owned(),
            r#"{"x": {"dtype": "float32", "shape": [1, 3, 48], "data": []}}"#.into(),
            "needs 144 values",
        ),
        (
            classifier().to_string_lossy().into_owned(),
            r#"{"x": {"dtype": "int64", "shape": [1], "data": [1]}}"#.into(),
            "must be float32",
        ),
    ];
    for (model, input, expect) in cases {
        let out = node.cli(&["infer", "--model", &model, "--input", &input]);
        assert_one_line_error(&out, expect);
    }
    let out = node.cli(&[
        "infer",
        "--model",
        &path("x.onnx"),
        "--input",
        "[1]",
        "--plugin",
        "nope",
    ]);
    assert_one_line_error(&out, "plugin `nope` is not loaded");
}

#[test]
fn a_panicking_plugin_is_one_error_line_not_a_crash() {
    let node = Node::new();
    let model = node.data_dir().join("model.panicky");
    std::fs::write(&model, "panicky").unwrap();
    let model = model.to_str().unwrap();
    let out = node.cli(&["infer", "--model", model, "--input", "[-1.0, 2.0]"]);
    assert_one_line_error(&out, "plugin panicked in infer");
    assert!(
        stderr(&out).contains("deliberate panic: negative input -1"),
        "{}",
        stderr(&out)
    );
    let out = node.cli(&["infer", "--model", model, "--input", "[1.0, 2.0]"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let bad = node.data_dir().join("load.panicky");
    std::fs::write(&bad, "panic-on-load").unwrap();
    let out = node.cli(&[
        "infer",
        "--model",
        bad.to_str().unwrap(),
        "--input",
        "[1.0]",
    ]);
    assert_one_line_error(&out, "plugin panicked in load");
}

#[test]
fn config_errors_name_file_key_and_expected_form() {
    let node = Node::new();
    node.write_config("[node]\nname = \"rig\"\nmax_jobs = 3\n");
    let out = node.cli(&["config", "show"]);
    assert_one_line_error(&out, "unknown field `max_jobs`");
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));

    node.write_config("[api]\nport = \"http\"\n");
    assert_one_line_error(&node.cli(&["config", "show"]), "key `api.port`");

    node.write_config("[central_server]\nheartbeat_interval_seconds = 0\n");
    assert_one_line_error(
        &node.cli(&["config", "show"]),
        "`central_server.heartbeat_interval_seconds`: must be between 1 and 3600 seconds, got 0",
    );

    let out = node.cli(&["config", "show", "--config", "/nonexistent/cyxwiz.toml"]);
    assert_one_line_error(&out, "/nonexistent/cyxwiz.toml");
}

#[test]
fn config_show_tells_where_each_value_came_from() {
    let node = Node::new();
    node.write_config(
        "[node]\nname = \"from-file\"\n[api]\nport = 8123\n[logging]\nlevel = \"debug\"\n",
    );
    let out = node
        .command()
        .args(["config", "show", "--api-port", "9001"])
        .env("CYXWIZ_NODE_NAME", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("name = \"from-env\"  # env CYXWIZ_NODE_NAME"),
        "{text}"
    );
    assert!(text.contains("port = 9001  # flag --api-port"), "{text}");
    assert!(text.contains("level = \"debug\"  # file"), "{text}");
    assert!(text.contains("host = \"127.0.0.1\"  # default"), "{text}");
}

#[test]
fn models_list_scans_model_dirs() {
    let node = Node::new();
    let out = node.cli(&[
        "models",
        "list",
        "--json",
        "--model-dir",
        models_dir().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let squeeze = rows
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .ends_with("light_squeezenet.onnx")
        })
        .expect("squeezenet listed");
    assert_eq!(squeeze["format"], "onnx");
    // Both ONNX plugins, in discovery order (no preference configured).
    assert_eq!(
        squeeze["plugins"],
        serde_json::json!(["onnx-ort", "onnx-tract"])
    );
    assert_eq!(
        squeeze["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(models_dir().join("onnx-light/light_squeezenet.onnx"))
            .unwrap()
            .len()
    );
    assert!(rows
        .iter()
        .all(|r| !r["path"].as_str().unwrap().contains(".wheels")));
}

#[test]
fn generate_streams_text_from_a_real_llm() {
    let node = Node::new();
    let model = models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = node.cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        "What is 2+2?",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--options",
        r#"{"context_length": 256, "slots": 1}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains('4'), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("[finish: ") && err.contains("completion tokens"),
        "{err}"
    );

    let cls = classifier();
    let out = node.cli(&[
        "generate",
        "--model",
        cls.to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert_one_line_error(&out, "does not generate text");
}

#[test]
fn runtime_options_and_preference_select_onnx_runtime() {
    let node = Node::new();
    let library = models_dir().join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    node.write_config(&format!(
        "[plugins]\npreference = {{ onnx = [\"onnx-ort\", \"onnx-tract\"] }}\n\n[runtimes.onnx-ort]\nlibrary = \"{}\"\n",
        library.display()
    ));
    let model = classifier();
    let input = classifier_input(&node, 1);
    let out = node.cli(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &input,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "onnx-ort");

    // Without the library, ONNX Runtime refuses and the next plugin serves the model.
    node.write_config("[plugins]\npreference = { onnx = [\"onnx-ort\", \"onnx-tract\"] }\n");
    let out = node.cli(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &input,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "onnx-tract");
}

#[test]
fn tflite_runs_on_tract_and_falls_through_to_the_tflite_c_api() {
    let node = Node::new();
    node.write_config(&format!(
        "[runtimes.tflite-litert]\nlibrary = \"{}\"\n",
        models_dir()
            .join("runtimes/tflite/libtensorflowlite_c.so")
            .display()
    ));
    let image = |name: &str, side: usize| {
        let data: Vec<f32> = (0..side * side * 3)
            .map(|i| ((i * 13) % 29) as f32 / 29.0)
            .collect();
        let input = serde_json::json!({name: {"dtype": "float32", "shape": [1, side, side, 3], "data": data}});
        let path = node.data_dir().join(format!("{name}-{side}.json"));
        std::fs::write(&path, input.to_string()).unwrap();
        format!("@{}", path.display())
    };
    // The generated fp32 CNN: tract translates every operator, so the preferred plugin runs it.
    let tiny = models_dir().join("fixtures/tiny_cnn.tflite");
    let out = node.cli(&[
        "infer",
        "--model",
        tiny.to_str().unwrap(),
        "--input",
        &image("image", 8),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "tflite-tract", "{json}");
    // MediaPipe's detector needs DEQUANTIZE: tract refuses, the TFLite C API runs it.
    let face = models_dir().join("mediapipe-face/face_detection_short_range.tflite");
    let out = node.cli(&[
        "infer",
        "--model",
        face.to_str().unwrap(),
        "--input",
        &image("input", 128),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "tflite-litert", "{json}");
    // Forcing tract names what it lacks, in one line.
    let out = node.cli(&[
        "infer",
        "--model",
        face.to_str().unwrap(),
        "--plugin",
        "tflite-tract",
        "--input",
        &image("input", 128),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("DEQUANTIZE"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn plugins_list_names_every_runtime_and_its_version() {
    let node = Node::new();
    node.write_config(&format!(
        "{}\n[runtimes.tflite-litert]\nlibrary = \"{}\"\n",
        common::prefer_onnx_runtime(),
        models_dir()
            .join("runtimes/tflite/libtensorflowlite_c.so")
            .display()
    ));
    let out = node.cli(&["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let runtime = |name: &str| {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(row["status"], "loaded", "{row}");
        row["runtime"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(runtime("onnx-ort"), "ONNX Runtime 1.31.1");
    assert_eq!(runtime("onnx-tract"), "tract 0.23.9");
    assert_eq!(runtime("tflite-tract"), "tract-tflite 0.23.9");
    assert_eq!(runtime("tflite-litert"), "TensorFlow Lite 2.17.1");
    assert!(runtime("torch-tch").starts_with("libtorch 2.13.0"));
    assert!(runtime("gguf-llama").starts_with("llama.cpp"));
    // A runtime library that is not there: the plugin still lists, with the reason.
    node.write_config("[runtimes.onnx-ort]\nlibrary = \"/nonexistent/libonnxruntime.so\"\n");
    let out = node.cli(&["plugins", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "runtime: ONNX Runtime library /nonexistent/libonnxruntime.so does not exist"
        ),
        "{text}"
    );
}

#[test]
fn torchscript_runs_through_the_node_with_declared_shapes() {
    let node = Node::new();
    let model = models_dir().join("silero-vad/silero_vad.jit");
    let data: Vec<f32> = (0..512)
        .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let input = serde_json::json!({
        "x": {"dtype": "float32", "shape": [1, 512], "data": data},
        "sr": {"dtype": "int64", "shape": [], "data": [16000]},
    });
    let path = node.data_dir().join("vad.json");
    std::fs::write(&path, input.to_string()).unwrap();
    let input = format!("@{}", path.display());
    let model = model.to_str().unwrap();
    let out = node.cli(&[
        "infer",
        "--model",
        model,
        "--options",
        r#"{"input_shapes": {"x": [-1, 512]}, "reset_method": "reset_states"}"#,
        "--input",
        &input,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["plugin"], "torch-tch");
    assert_eq!(
        json["outputs"]["output"]["shape"],
        serde_json::json!([1, 1])
    );
    let p = json["outputs"]["output"]["data"][0].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{p}");
    // Without shapes: one line naming the option and the signature.
    let out = node.cli(&["infer", "--model", model, "--input", &input]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("input_shapes") && err.contains("forward(x: Tensor, sr: int)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Runs `args` with stdout on a pipe whose reader is already gone (as after `| head -c1`):
/// the command must end quietly, never with std's "failed printing to stdout" panic.
fn into_closed_pipe(node: &Node, args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the command starts: its first write to stdout fails with EPIPE.
    drop(reader);
    let out = node
        .command()
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
        "{args:?}: {err}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{args:?}: {:?} {err}",
        out.status
    );
}

#[test]
fn every_command_ends_quietly_on_a_closed_pipe() {
    let node = Node::new();
    into_closed_pipe(&node, &["config", "show"]);
    into_closed_pipe(&node, &["plugins", "list"]);
    into_closed_pipe(&node, &["plugins", "list", "--json"]);
    into_closed_pipe(&node, &["models", "list", "--json"]);
    let running = node.start(&[]);
    into_closed_pipe(&node, &["status", "--json"]);
    into_closed_pipe(&node, &["status"]);
    into_closed_pipe(&node, &["jobs", "list"]);
    into_closed_pipe(&node, &["deployments", "list", "--json"]);
    drop(running);
}
