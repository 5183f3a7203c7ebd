//! `cyxwiz-node`: the command line. Parses flags, builds the validated config, and dispatches
//! to the daemon or a one-shot command. Every failure ends as one `error:` line on stderr and
//! a non-zero exit code.

use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cyxwiz_node::{
    config::{show, Config, GlobalArgs, Source},
    daemon, logging,
    models::{scan, tensor_json, Engine, ModelWorker},
    plugins::{self, PluginState},
};
use cyxwiz_sdk::{Capabilities, ChatMessage, GenerateRequest, LoadOptions, SamplingParams};
use std::{path::PathBuf, process::ExitCode};

/// `print!` for every command, shadowing std's (see [`out`]). Defined before `mod cmd` so the
/// subcommands use it too.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` for every command, shadowing std's (see [`out`]).
macro_rules! println {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cmd;

/// Standard output of the commands. A reader that stops early (`cyxwiz-node status --json |
/// head -c1`) closes the pipe: the next write fails with EPIPE (Rust ignores SIGPIPE), and
/// std's `println!` would panic with "failed printing to stdout: Broken pipe". Here the
/// command ends quietly with status 0 instead: the reader has all it wanted. The signal's
/// disposition is left alone, so a write to a socket whose peer has gone (the control socket)
/// stays an error the command reports.
mod out {
    use std::io::Write;

    /// Writes `args` to stdout, or ends the process if it cannot be written.
    pub fn write(args: std::fmt::Arguments<'_>) {
        if let Err(e) = std::io::stdout().lock().write_fmt(args) {
            fail(&e);
        }
    }

    /// Ends the process after a failed write to stdout: quietly with status 0 on a closed
    /// pipe, else with one `error:` line and status 1.
    pub fn fail(e: &std::io::Error) -> ! {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// The CyxWiz server node: hosts model-runtime plugins and serves their models.
#[derive(Parser, Debug)]
#[command(name = "cyxwiz-node", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node daemon (the default): load plugins and configured models, serve HTTP.
    Run,
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Inspect model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Run one tensor inference and print the outputs as JSON.
    Infer(InferArgs),
    /// Generate text with a language model, streaming it to stdout.
    Generate(GenerateArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Deploy a model on the running node.
    Deploy(cmd::deploy::DeployArgs),
    /// Stop serving a deployment of the running node.
    Undeploy {
        /// Deployment name.
        name: String,
    },
    /// Inspect the running node's deployments.
    #[command(subcommand)]
    Deployments(cmd::deploy::DeploymentsCommand),
    /// Training jobs on the running node: submit, list, show, logs, cancel, pause, resume,
    /// weights.
    #[command(subcommand)]
    Jobs(cmd::jobs::JobsCommand),
    /// The running node: id, central-server connection, last heartbeat and error, ports.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// Every plugin library found: name, version, formats, capabilities, path, status.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Opens one plugin library and prints its metadata and runtime line as one JSON line.
    /// The node runs it in a child process, so that discovery maps no library in its own.
    #[command(hide = true)]
    Probe {
        /// The library file.
        library: PathBuf,
        /// The `[runtimes]` table as a JSON object: plugin name to options.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        runtimes: String,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Model files in the model directories: format, size, plugins that load them.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// The effective configuration and where each value came from.
    Show,
}

/// How the one-shot commands load their model.
#[derive(clap::Args, Debug)]
struct ModelFlags {
    /// Model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Plugin to use instead of the preferred one for the file's extension.
    #[arg(long)]
    plugin: Option<String>,
    /// Plugin load options as a JSON object, e.g. `{"input_shapes": {"x": [1, 3, 48, 192]}}`.
    #[arg(long, value_name = "JSON")]
    options: Option<String>,
    /// Threads per call; 0 lets the plugin choose.
    #[arg(long, default_value_t = 0)]
    threads: u32,
}

#[derive(clap::Args, Debug)]
struct InferArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// Inputs as JSON (`{"x": [[...]]}` or `{"x": {"dtype", "shape", "data"}}`), or `@FILE`.
    #[arg(long, value_name = "JSON")]
    input: String,
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// Raw prompt to continue.
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    prompt: Option<String>,
    /// A user message, rendered with the model's chat template.
    #[arg(long)]
    chat: Option<String>,
    /// Maximum tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

fn one_line(err: &anyhow::Error) -> String {
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    let mut text = chain.join(": ");
    text = text.replace(['\n', '\r'], " ");
    text
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match dispatch(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<cmd::Refused>() {
                // The daemon's refusal: the one CLI line of its error kind.
                Some(refused) => eprintln!("{refused}"),
                None => eprintln!("error: {}", one_line(&err)),
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli, matches: &clap::ArgMatches) -> Result<()> {
    // The probe reads no configuration (its parent did) and logs nothing.
    if let Some(Command::Plugins(PluginsCommand::Probe { library, runtimes })) = &cli.command {
        return plugins_probe(library, runtimes);
    }
    let config = Config::load(&cli.global, matches)?;
    let command = cli.command.unwrap_or(Command::Run);
    let level = match (&command, config.source("logging.level")) {
        (Command::Run, _) => config.logging.level.clone(),
        (_, Source::Default) => "warn".to_string(),
        _ => config.logging.level.clone(),
    };
    // The daemon keeps recent lines for the control socket's GetLogs / StreamLogs.
    let capture = matches!(command, Command::Run);
    logging::init(&config, &level, capture).map_err(|e| anyhow!(e))?;
    match command {
        Command::Run => run(config),
        Command::Plugins(PluginsCommand::List { json }) => plugins_list(&config, json),
        Command::Plugins(PluginsCommand::Probe { library, runtimes }) => {
            plugins_probe(&library, &runtimes)
        }
        Command::Models(ModelsCommand::List { json }) => models_list(&config, json),
        Command::Infer(args) => infer(&config, args),
        Command::Generate(args) => generate(&config, args),
        Command::Config(ConfigCommand::Show) => {
            print!("{}", show::render(&config));
            Ok(())
        }
        Command::Keys(command) => cmd::keys::run(&config, command),
        Command::Deploy(args) => cmd::deploy::deploy(&config, args),
        Command::Undeploy { name } => cmd::deploy::undeploy(&config, &name),
        Command::Deployments(cmd::deploy::DeploymentsCommand::List { json }) => {
            cmd::deploy::list(&config, json)
        }
        Command::Jobs(command) => cmd::jobs::run(&config, command),
        Command::Status { json } => cmd::status::run(&config, json),
    }
}

fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
        };
        daemon::run(config, shutdown).await
    })?;
    Ok(())
}

fn plugins_probe(library: &std::path::Path, runtimes: &str) -> Result<()> {
    println!("{}", plugins::probe_answer(library, runtimes));
    Ok(())
}

fn plugins_list(config: &Config, json: bool) -> Result<()> {
    let registry = daemon::discover_plugins(config);
    if json {
        let rows: Vec<serde_json::Value> = registry
            .entries()
            .iter()
            .map(|e| match &e.state {
                PluginState::Loaded(lib) => {
                    let m = lib.metadata();
                    let (runtime, runtime_error) = match registry.runtime_of(lib) {
                        Ok(runtime) => (runtime, None),
                        Err(reason) => (None, Some(reason)),
                    };
                    serde_json::json!({
                        "name": m.name, "version": m.version, "description": m.description,
                        "runtime": runtime, "runtime_error": runtime_error,
                        "formats": m.formats.iter().map(|(f, exts)| serde_json::json!({"name": f, "extensions": exts})).collect::<Vec<_>>(),
                        "capabilities": m.capabilities.names(),
                        "interface_version": m.interface_version,
                        "path": e.path, "status": "loaded",
                    })
                }
                PluginState::Failed(reason) => serde_json::json!({
                    "path": e.path, "status": "failed", "reason": reason,
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if registry.entries().is_empty() {
        println!("no plugin libraries found");
        return Ok(());
    }
    // A note line follows a row that needs one.
    let mut notes: Vec<Option<String>> = Vec::new();
    let mut out = cmd::table(&[
        "NAME",
        "VERSION",
        "RUNTIME",
        "FORMATS",
        "CAPABILITIES",
        "STATUS",
        "PATH",
    ]);
    for entry in registry.entries() {
        let path = entry.path.display().to_string();
        match &entry.state {
            PluginState::Loaded(lib) => {
                let m = lib.metadata();
                let formats: Vec<String> = m
                    .formats
                    .iter()
                    .map(|(f, exts)| format!("{f}(.{})", exts.join(",.")))
                    .collect();
                let (runtime, note) = match registry.runtime_of(lib) {
                    Ok(runtime) => (runtime.unwrap_or_else(|| "-".to_string()), None),
                    Err(reason) => (
                        "unavailable".to_string(),
                        Some(format!("runtime: {reason}")),
                    ),
                };
                out.add_row([
                    m.name.clone(),
                    m.version.clone(),
                    runtime,
                    formats.join(" "),
                    m.capabilities.names().join(","),
                    "loaded".to_string(),
                    path,
                ]);
                notes.push(note);
            }
            PluginState::Failed(reason) => {
                let stem = entry
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dash = || "-".to_string();
                out.add_row([
                    stem,
                    dash(),
                    dash(),
                    dash(),
                    dash(),
                    "failed".to_string(),
                    path,
                ]);
                notes.push(Some(format!("reason: {reason}")));
            }
        }
    }
    // Line 0 is the header; row r is line r + 1.
    for (i, line) in out.lines().enumerate() {
        println!("{}", line.trim_end());
        if let Some(Some(note)) = i.checked_sub(1).and_then(|r| notes.get(r)) {
            println!("    {note}");
        }
    }
    Ok(())
}

fn models_list(config: &Config, json: bool) -> Result<()> {
    let registry = daemon::discover_plugins(config);
    let mut dirs = vec![config.models_dir()];
    dirs.extend(config.models.dirs.iter().map(|d| config.resolve(d)));
    let files = scan::scan(&dirs, &registry);
    if json {
        println!("{}", serde_json::to_string_pretty(&files)?);
        return Ok(());
    }
    if files.is_empty() {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!("no model files in {}", shown.join(", "));
        return Ok(());
    }
    let mut out = cmd::table(&["FORMAT", "SIZE", "PLUGINS", "PATH"]);
    for f in files {
        let plugins = if f.plugins.is_empty() {
            "(no plugin loaded)".to_string()
        } else {
            f.plugins.join(",")
        };
        out.add_row([
            f.format,
            human_size(f.size_bytes),
            plugins,
            f.path.display().to_string(),
        ]);
    }
    if let Some(size) = out.column_mut(1) {
        size.set_cell_alignment(comfy_table::CellAlignment::Right);
    }
    cmd::print_table(&out);
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn infer(config: &Config, args: InferArgs) -> Result<()> {
    let input_text = match args.input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("--input {file}"))?,
        None => args.input.clone(),
    };
    let input: serde_json::Value =
        serde_json::from_str(&input_text).map_err(|e| anyhow!("--input is not valid JSON: {e}"))?;
    let (lib, model) = load_model(
        config,
        &args.model,
        Capabilities::TENSOR_INFERENCE,
        "take tensors",
    )?;
    let inputs = tensor_json::parse_inputs(&input, model.info())?;
    let plugin = lib.metadata().name.clone();
    let name = args
        .model
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let worker = ModelWorker::spawn(&name, &plugin, Engine::Plain(model), 1, 1, 1)?;
    let started = std::time::Instant::now();
    let outputs = worker.infer_blocking(inputs)?;
    let out = serde_json::json!({
        "model": args.model.model,
        "plugin": plugin,
        "seconds": started.elapsed().as_secs_f64(),
        "outputs": tensor_json::outputs_to_json(&outputs),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Loads a model for a one-shot command and checks it can do `needed` ("does not {doing}").
fn load_model(
    config: &Config,
    args: &ModelFlags,
    needed: Capabilities,
    doing: &str,
) -> Result<(
    std::sync::Arc<cyxwiz_plugin_host::PluginLibrary>,
    cyxwiz_plugin_host::LoadedModel,
)> {
    let options = parse_options(args.options.as_deref())?;
    let registry = daemon::discover_plugins(config);
    let (lib, model) = registry.load(
        &args.model,
        args.plugin.as_deref(),
        &LoadOptions {
            threads: args.threads,
            options,
            ..LoadOptions::default()
        },
    )?;
    if !model.info().capabilities.contains(needed) {
        bail!(
            "{}: this model does not {doing} (capabilities: {})",
            args.model.display(),
            model.info().capabilities.names().join(", ")
        );
    }
    Ok((lib, model))
}

fn parse_options(text: Option<&str>) -> Result<serde_json::Value> {
    match text {
        None => Ok(serde_json::Value::Object(Default::default())),
        Some(text) => match serde_json::from_str(text) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            Ok(_) => bail!("--options must be a JSON object"),
            Err(e) => bail!("--options is not valid JSON: {e}"),
        },
    }
}

fn generate(config: &Config, args: GenerateArgs) -> Result<()> {
    use std::io::Write;
    let (_, model) = load_model(
        config,
        &args.model,
        Capabilities::TEXT_GENERATION,
        "generate text",
    )?;
    let request = GenerateRequest {
        messages: args
            .chat
            .iter()
            .map(|c| ChatMessage {
                role: "user".into(),
                content: c.clone(),
            })
            .collect(),
        prompt: args.prompt.unwrap_or_default(),
        params: SamplingParams {
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            seed: args.seed,
            stop: args.stop,
            ..SamplingParams::default()
        },
    };
    let started = std::time::Instant::now();
    let mut first: Option<std::time::Duration> = None;
    let mut stdout = std::io::stdout().lock();
    let out = model.generate(&request, &mut |piece: &str| {
        first.get_or_insert_with(|| started.elapsed());
        stdout
            .write_all(piece.as_bytes())
            .and_then(|_| stdout.flush())
            .is_ok()
    })?;
    if let Err(e) = writeln!(stdout).and_then(|()| stdout.flush()) {
        out::fail(&e);
    }
    let total = started.elapsed().as_secs_f64();
    let decode = total - first.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    eprintln!(
        "[finish: {}, {} prompt + {} completion tokens, first token after {:.0} ms, {:.1} tokens/s]",
        out.finish_reason.as_str(),
        out.prompt_tokens,
        out.completion_tokens,
        first.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0),
        if decode > 0.0 { out.completion_tokens.saturating_sub(1) as f64 / decode } else { 0.0 }
    );
    Ok(())
}
