//! Reading a plugin library's metadata and runtime line in a child process, so that the node
//! never maps a library (nor runs its native runtime's static initialisers) before a model
//! needs it. The child is the node binary itself (`cyxwiz-node plugins probe LIB --runtimes
//! JSON`, see [`answer`]); [`run`] is the parent's side, bounded in time, so that a library
//! that hangs or crashes while loading becomes a failed entry and never takes the node down.

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{Capabilities, PluginMetadata};
use serde::{Deserialize, Serialize};
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The subcommand (after the binary's name) that runs [`answer`] in the child.
pub const SUBCOMMAND: [&str; 2] = ["plugins", "probe"];

/// Seconds a probe may take unless `CYXWIZ_PLUGIN_PROBE_TIMEOUT` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the node probes plugin libraries.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// The node binary, run as `EXE plugins probe LIB --runtimes JSON`.
    pub exe: PathBuf,
    /// Where answers are kept between starts (`None`: not kept).
    pub cache: Option<PathBuf>,
    /// How long one probe may take before it is killed and its library marked failed.
    pub timeout: Duration,
}

impl ProbeSettings {
    /// Probes with the running binary, keeping answers in `<data_dir>/plugin-cache.json`,
    /// with the timeout from `CYXWIZ_PLUGIN_PROBE_TIMEOUT` (seconds) or [`DEFAULT_TIMEOUT`].
    /// `None` when the running binary cannot be found.
    pub fn for_data_dir(data_dir: &Path) -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let timeout = std::env::var("CYXWIZ_PLUGIN_PROBE_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        Some(Self {
            exe,
            cache: Some(data_dir.join("plugin-cache.json")),
            timeout,
        })
    }
}

/// What a probe learnt about a library that opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Described {
    pub name: String,
    pub version: String,
    pub description: String,
    pub formats: Vec<(String, Vec<String>)>,
    pub capabilities: u32,
    pub interface_version: String,
    /// The runtime line (`None`: the plugin names none).
    pub runtime: Option<String>,
    /// Why its runtime is unusable, when it is.
    pub runtime_error: Option<String>,
}

impl Described {
    fn new(metadata: &PluginMetadata, runtime: Result<Option<String>, String>) -> Self {
        let (runtime, runtime_error) = match runtime {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        Self {
            name: metadata.name.clone(),
            version: metadata.version.clone(),
            description: metadata.description.clone(),
            formats: metadata.formats.clone(),
            capabilities: metadata.capabilities.0,
            interface_version: metadata.interface_version.clone(),
            runtime,
            runtime_error,
        }
    }

    pub fn metadata(&self) -> PluginMetadata {
        PluginMetadata {
            name: self.name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            formats: self.formats.clone(),
            capabilities: Capabilities(self.capabilities),
            interface_version: self.interface_version.clone(),
        }
    }

    pub fn runtime(&self) -> Result<Option<String>, String> {
        match &self.runtime_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.runtime.clone()),
        }
    }
}

/// A probe's answer: the plugin, or why the library is not one the node can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Answer {
    Plugin(Described),
    Failed(String),
}

/// The line the child prints; the marker tells it apart from anything a library prints.
#[derive(Serialize, Deserialize)]
struct Reply {
    cyxwiz_probe: Answer,
}

/// The child's side: opens `library` in this process, asks its runtime with its options from
/// `runtimes` (the `[runtimes]` table as a JSON object: plugin name to options) and returns
/// the one line to print on stdout.
pub fn answer(library: &Path, runtimes: &str) -> String {
    let answer = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(runtimes)
    {
        Err(e) => Answer::Failed(format!("the probe got bad --runtimes JSON: {e}")),
        Ok(runtimes) => match PluginLibrary::open(library) {
            Err(e) => Answer::Failed(e.to_string()),
            Ok(lib) => {
                let options = runtimes
                    .get(&lib.metadata().name)
                    .cloned()
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
                let runtime = lib.runtime(&options).map_err(|e| e.to_string());
                Answer::Plugin(Described::new(lib.metadata(), runtime))
            }
        },
    };
    serde_json::to_string(&Reply {
        cyxwiz_probe: answer,
    })
    .unwrap_or_else(|e| {
        format!(r#"{{"cyxwiz_probe":{{"Failed":"cannot encode the answer: {e}"}}}}"#)
    })
}

/// The parent's side: runs the probe of `library` and waits for it at most
/// `settings.timeout`; a probe that hangs is killed. Never fails: a probe that did not answer
/// is an [`Answer::Failed`] saying why.
pub(super) fn run(settings: &ProbeSettings, library: &Path, runtimes: &str) -> Answer {
    let spawned = Command::new(&settings.exe)
        .args(SUBCOMMAND)
        .arg(library)
        .arg("--runtimes")
        .arg(runtimes)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Answer::Failed(format!(
                "cannot start the plugin probe ({}): {e}",
                settings.exe.display()
            ))
        }
    };
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= settings.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Answer::Failed(format!("cannot wait for the plugin probe: {e}")),
        }
    };
    // The pipes close when the child ends, unless something it started still holds them.
    let grace = Duration::from_secs(1);
    let out = stdout.recv_timeout(grace).unwrap_or_default();
    let err = stderr.recv_timeout(grace).unwrap_or_default();
    if let Some(answer) = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Reply>(l.trim()).ok())
    {
        // Answered; whatever happened after (a crash in an exit handler) does not matter.
        return answer.cyxwiz_probe;
    }
    let last = err
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| format!(": {}", l.chars().take(300).collect::<String>()))
        .unwrap_or_default();
    let why = match status {
        None => format!(
            "loading the library did not finish within {:.0} s (it hangs in its initialisation?); the probe was killed",
            settings.timeout.as_secs_f64()
        ),
        Some(status) => match exit_signal(&status) {
            Some(signal) => format!(
                "loading the library crashed the probe ({}){last}",
                signal_name(signal)
            ),
            None => format!(
                "the probe exited ({status}) without an answer{last}"
            ),
        },
    };
    Answer::Failed(why)
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn exit_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    format!("signal {signal}, {name}")
}
