//! Command-line flags shared by every subcommand. Each flag also reads an environment
//! variable; flags and variables override the config file, and remember which one did.

use super::{Config, Source};
use clap::{parser::ValueSource, ArgMatches, Args};
use std::path::PathBuf;

/// Flags that shape the configuration, accepted by every subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Config file to read [default: <data-dir>/config.toml, if it exists]
    #[arg(long, env = "CYXWIZ_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory: config, database, models, plugins, logs [default: ~/.cyxwiz/server-node]
    #[arg(long, env = "CYXWIZ_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Node name shown to the central server (`node.name`)
    #[arg(long, env = "CYXWIZ_NODE_NAME", global = true)]
    pub name: Option<String>,

    /// Central server HOST:PORT (plaintext), http://HOST:PORT or https://HOST:PORT (TLS);
    /// empty for standalone mode (`central_server.address`)
    #[arg(
        long,
        env = "CYXWIZ_CENTRAL_SERVER",
        global = true,
        value_name = "ADDRESS"
    )]
    pub central: Option<String>,

    /// The operator's CyxWiz account token (JWT) for the central server
    /// (`central_server.auth_token`). As a flag it is visible to other users in the process
    /// list: prefer the environment variable or --auth-token-file
    #[arg(
        long,
        env = "CYXWIZ_AUTH_TOKEN",
        global = true,
        value_name = "JWT",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// File holding the operator's token, read at start (`central_server.auth_token_file`);
    /// keep it mode 0600
    #[arg(
        long,
        env = "CYXWIZ_AUTH_TOKEN_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub auth_token_file: Option<PathBuf>,

    /// Log level or tracing filter (`logging.level`)
    #[arg(long, env = "CYXWIZ_LOG_LEVEL", global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text or json (`logging.format`)
    #[arg(long, env = "CYXWIZ_LOG_FORMAT", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Address the HTTP API listens on (`api.host`)
    #[arg(long, env = "CYXWIZ_API_HOST", global = true, value_name = "IP")]
    pub api_host: Option<String>,

    /// Port the HTTP API listens on; 0 picks a free port (`api.port`)
    #[arg(long, env = "CYXWIZ_API_PORT", global = true, value_name = "PORT")]
    pub api_port: Option<u16>,

    /// gRPC ports, comma-separated, the first registered with the central server; `off` turns
    /// gRPC off (`grpc.ports`)
    #[arg(
        long,
        env = "CYXWIZ_GRPC_PORTS",
        global = true,
        value_name = "PORTS",
        value_parser = parse_ports
    )]
    pub grpc_ports: Option<PortList>,

    /// Extra plugin directory, searched first; repeat or separate with `:` (`plugins.dirs`)
    #[arg(
        long = "plugin-dir",
        env = "CYXWIZ_PLUGIN_DIRS",
        global = true,
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub plugin_dirs: Vec<PathBuf>,

    /// Extra model directory for `models list`; repeat or separate with `:` (`models.dirs`)
    #[arg(
        long = "model-dir",
        env = "CYXWIZ_MODEL_DIRS",
        global = true,
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub model_dirs: Vec<PathBuf>,
}

/// A list of ports from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

/// Parses `50052,50055` or `off`.
fn parse_ports(text: &str) -> Result<PortList, String> {
    let text = text.trim();
    if text.is_empty() || text == "off" || text == "none" {
        return Ok(PortList(Vec::new()));
    }
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port; expected e.g. 50052,50055 or off"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PortList)
}

/// Where clap took `id` from, looking through the subcommand chain (global flags given after
/// a subcommand live in its matches).
fn value_source(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    let here = matches
        .try_contains_id(id)
        .ok()
        .filter(|c| *c)
        .and_then(|_| matches.value_source(id));
    match (here, matches.subcommand()) {
        (Some(ValueSource::DefaultValue) | None, Some((_, sub))) => value_source(sub, id).or(here),
        (here, _) => here,
    }
}

fn source(matches: &ArgMatches, id: &str, flag: &str, env: &str) -> Source {
    match value_source(matches, id) {
        Some(ValueSource::EnvVariable) => Source::Env(env.to_string()),
        _ => Source::Flag(flag.to_string()),
    }
}

/// Applies flags and environment variables on top of `config`.
pub(super) fn apply(args: &GlobalArgs, matches: &ArgMatches, config: &mut Config) {
    let mut set = |key: &str, id: &str, flag: &str, env: &str| {
        config
            .sources
            .insert(key.to_string(), source(matches, id, flag, env));
    };
    if args.name.is_some() {
        set("node.name", "name", "--name", "CYXWIZ_NODE_NAME");
    }
    if args.central.is_some() {
        set(
            "central_server.address",
            "central",
            "--central",
            "CYXWIZ_CENTRAL_SERVER",
        );
    }
    if args.auth_token.is_some() {
        set(
            "central_server.auth_token",
            "auth_token",
            "--auth-token",
            "CYXWIZ_AUTH_TOKEN",
        );
    }
    if args.auth_token_file.is_some() {
        set(
            "central_server.auth_token_file",
            "auth_token_file",
            "--auth-token-file",
            "CYXWIZ_AUTH_TOKEN_FILE",
        );
    }
    if args.log_level.is_some() {
        set(
            "logging.level",
            "log_level",
            "--log-level",
            "CYXWIZ_LOG_LEVEL",
        );
    }
    if args.log_format.is_some() {
        set(
            "logging.format",
            "log_format",
            "--log-format",
            "CYXWIZ_LOG_FORMAT",
        );
    }
    if args.api_host.is_some() {
        set("api.host", "api_host", "--api-host", "CYXWIZ_API_HOST");
    }
    if args.api_port.is_some() {
        set("api.port", "api_port", "--api-port", "CYXWIZ_API_PORT");
    }
    if args.grpc_ports.is_some() {
        set(
            "grpc.ports",
            "grpc_ports",
            "--grpc-ports",
            "CYXWIZ_GRPC_PORTS",
        );
    }
    if !args.plugin_dirs.is_empty() {
        set(
            "plugins.dirs",
            "plugin_dirs",
            "--plugin-dir",
            "CYXWIZ_PLUGIN_DIRS",
        );
    }
    if !args.model_dirs.is_empty() {
        set(
            "models.dirs",
            "model_dirs",
            "--model-dir",
            "CYXWIZ_MODEL_DIRS",
        );
    }
    if let Some(v) = &args.name {
        config.node.name = v.clone();
    }
    if let Some(v) = &args.central {
        config.central_server.address = v.clone();
    }
    if let Some(v) = &args.auth_token {
        config.central_server.auth_token = v.clone();
    }
    if let Some(v) = &args.auth_token_file {
        config.central_server.auth_token_file = v.clone();
    }
    if let Some(v) = &args.log_level {
        config.logging.level = v.clone();
    }
    if let Some(v) = &args.log_format {
        config.logging.format = v.clone();
    }
    if let Some(v) = &args.api_host {
        config.api.host = v.clone();
    }
    if let Some(v) = args.api_port {
        config.api.port = v;
    }
    if let Some(ports) = &args.grpc_ports {
        config.grpc.ports = ports.0.clone();
    }
    let mut dirs = args.plugin_dirs.clone();
    dirs.append(&mut config.plugins.dirs);
    config.plugins.dirs = dirs;
    let mut dirs = args.model_dirs.clone();
    dirs.append(&mut config.models.dirs);
    config.models.dirs = dirs;
}
