//! `cyxwiz-node deploy PATH --name N`, `undeploy NAME` and `deployments list`: run-time
//! deployment changes on the running daemon, through its control socket.

use anyhow::Result;
use clap::Subcommand;
use cyxwiz_node::{config::Config, server::control};
use serde_json::json;
use std::path::PathBuf;

/// `deploy` arguments.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Model file or directory (a directory with `tokenizer.json` deploys as an embedding
    /// model).
    pub path: PathBuf,
    /// Public model name.
    #[arg(long)]
    pub name: String,
    /// Other names clients may use (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Plugin to use instead of the preferred one.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Threads per call; 0 lets the plugin choose.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// Worker threads; 0 = automatic.
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// Plugin load options as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub options: Option<String>,
}

/// `deployments` subcommands.
#[derive(Subcommand, Debug)]
pub enum DeploymentsCommand {
    /// Deployments of the running node: name, status, kind, plugin, path.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn socket(config: &Config) -> PathBuf {
    control::socket_path(&config.data_dir)
}

/// `deploy`.
pub fn deploy(config: &Config, args: DeployArgs) -> Result<()> {
    let options: serde_json::Value = match &args.options {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--options is not valid JSON: {e}"))?,
        None => json!({}),
    };
    if !options.is_object() {
        anyhow::bail!("--options must be a JSON object");
    }
    let path = std::path::absolute(&args.path)?;
    if !path.exists() {
        anyhow::bail!("{}: no such file or directory", path.display());
    }
    let body = json!({
        "name": args.name,
        "path": path,
        "aliases": args.aliases,
        "plugin": args.plugin,
        "threads": args.threads,
        "workers": args.workers,
        "options": options,
    });
    let answer = control::request(&socket(config), "POST", "/deployments", Some(&body))?;
    let d = &answer["deployment"];
    println!(
        "deployed `{}` ({}, plugin {}): {}",
        d["name"].as_str().unwrap_or(""),
        d["kind"].as_str().unwrap_or(""),
        d["plugin"].as_str().unwrap_or("-"),
        d["status"].as_str().unwrap_or("")
    );
    Ok(())
}

/// `undeploy`.
pub fn undeploy(config: &Config, name: &str) -> Result<()> {
    control::request(
        &socket(config),
        "DELETE",
        &format!("/deployments/{name}"),
        None,
    )?;
    println!("stopped `{name}`");
    Ok(())
}

/// `deployments list`.
pub fn list(config: &Config, json_out: bool) -> Result<()> {
    let answer = control::request(&socket(config), "GET", "/deployments", None)?;
    let list = answer["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no deployments");
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<10} {:<14} PATH",
        "NAME", "STATUS", "KIND", "PLUGIN"
    );
    for d in list {
        let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
        let mut line = format!(
            "{:<20} {:<8} {:<10} {:<14} {}",
            s("name"),
            s("status"),
            s("kind"),
            s("plugin"),
            s("path")
        );
        if let Some(m) = d["message"].as_str().filter(|m| !m.is_empty()) {
            line.push_str(&format!("  ({m})"));
        }
        println!("{line}");
    }
    Ok(())
}
