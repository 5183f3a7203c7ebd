//! The idle footprint: a node with every plugin installed and no models, its RSS once start
//! has settled, against the 30 MiB goal; and the plugins as `plugins list` sees them.

use crate::{
    fail, lib_name, support::chat::spawn_node, support::proc_status, Goal, Setup, PLUGINS,
};
use cyxwiz_sdk::serde_json;
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// `plugins list --json` of the node with `config`: "N libraries: M loaded (names) ...".
/// Ends the run when one of the plugins the bench needs failed to load (built against another
/// interface version, say): every number would be wrong.
fn plugin_summary(s: &Setup, config: &Path, data: &Path) -> String {
    let out = Command::new(&s.node)
        .args(["plugins", "list", "--json", "--config"])
        .arg(config)
        .env("CYXWIZ_DATA_DIR", data)
        .env("CYXWIZ_LOG_LEVEL", "error")
        .output();
    let rows = out
        .ok()
        .and_then(|o| serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).ok());
    let Some(rows) = rows else {
        fail("`cyxwiz-node plugins list --json` gave no list");
    };
    let file = |row: &serde_json::Value| {
        Path::new(row["path"].as_str().unwrap_or("?"))
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let broken: Vec<String> = rows
        .iter()
        .filter(|r| r["status"] == "failed" && PLUGINS.iter().any(|p| lib_name(p) == file(r)))
        .map(|r| format!("{} ({})", file(r), r["reason"].as_str().unwrap_or("?")))
        .collect();
    if !broken.is_empty() {
        fail(format_args!(
            "plugins failed to load: {}; rebuild the node and its plugins together (scripts/bench-serving)",
            broken.join("; ")
        ));
    }
    let mut by_status: Vec<(String, Vec<String>)> = Vec::new();
    for row in &rows {
        let status = row["status"].as_str().unwrap_or("?").to_string();
        let name = row["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| file(row));
        match by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, names)) => names.push(name),
            None => by_status.push((status, vec![name])),
        }
    }
    let parts: Vec<String> = by_status
        .iter()
        .map(|(status, names)| format!("{} {status} ({})", names.len(), names.join(", ")))
        .collect();
    format!("{} libraries: {}", rows.len(), parts.join("; "))
}

/// VmRSS (KiB) once it stops moving: within 1% over the last two seconds, or after 15 s.
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut samples: Vec<u64> = Vec::new();
    loop {
        samples.push(proc_status(pid, "VmRSS").unwrap_or(0));
        let last = &samples[samples.len().saturating_sub(8)..];
        let (lo, hi) = (
            *last.iter().min().unwrap_or(&0),
            *last.iter().max().unwrap_or(&0),
        );
        if (last.len() == 8 && hi - lo <= hi / 100) || Instant::now() > deadline {
            return *last.last().unwrap_or(&0);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn section(s: &Setup, data: &Path) {
    let config = data.join("idle.toml");
    let mut toml = format!(
        "[plugins.preference]\nonnx = [\"onnx-ort\", \"onnx-tract\"]\n\
         [runtimes.onnx-ort]\nlibrary = \"{}\"\n",
        s.ort.display()
    );
    let tflite = s.models.join("runtimes/tflite/libtensorflowlite_c.so");
    if tflite.exists() {
        toml += &format!(
            "[runtimes.tflite-litert]\nlibrary = \"{}\"\n",
            tflite.display()
        );
    }
    std::fs::write(&config, toml).expect("config");
    let summary = plugin_summary(s, &config, &data.join("idle"));
    let node = spawn_node(&s.node, &config, &data.join("idle"), "node".into());
    let rss = settled_rss(node.child.id());
    let hwm = proc_status(node.child.id(), "VmHWM").unwrap_or(0);
    let threads = proc_status(node.child.id(), "Threads").unwrap_or(0);
    drop(node);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let goal = Goal::AtMost(1.0);
    let ratio = mib(rss) / 30.0;
    println!("\n## Idle footprint: node with every plugin installed, no models");
    println!("Plugins as `plugins list` sees them with this config: {summary}.\n");
    println!("| measure | node | goal | node / goal | met |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| RSS once settled (VmRSS), MiB | {:.1} | ≤ 30 MiB | {ratio:.2}x | {} |",
        mib(rss),
        goal.verdict(&[ratio])
    );
    println!(
        "| peak RSS while starting (VmHWM), MiB | {:.1} | | | |",
        mib(hwm)
    );
    println!("| threads | {threads} | | | |");
}
