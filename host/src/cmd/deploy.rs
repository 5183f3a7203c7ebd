//! `cyxwiz-node deploy PATH --name N`, `undeploy NAME` and `deployments list`: run-time
//! deployment changes on the running daemon, through `DaemonService` on its control socket.

use super::{print_table, table, with_node, Refused};
use anyhow::Result;
use clap::Subcommand;
use cyxwiz_node::{config::Config, control::convert};
use cyxwiz_proto::daemon as pb;
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
    /// Where it runs: cpu, auto, cuda or cuda:N (see `device` under [[deployments]]).
    #[arg(long, default_value = "cpu")]
    pub device: String,
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

/// `deploy`.
pub fn deploy(config: &Config, args: DeployArgs) -> Result<()> {
    let options = match &args.options {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("--options is not valid JSON: {e}"))?;
            if !value.is_object() {
                anyhow::bail!("--options must be a JSON object");
            }
            value.to_string()
        }
        None => String::new(),
    };
    let path = std::path::absolute(&args.path)?;
    if !path.exists() {
        anyhow::bail!("{}: no such file or directory", path.display());
    }
    let request = pb::DeployModelRequest {
        model_path: path.display().to_string(),
        name: args.name,
        aliases: args.aliases,
        plugin: args.plugin.unwrap_or_default(),
        threads: args.threads,
        workers: args.workers,
        options_json: options,
        device: args.device,
        ..Default::default()
    };
    let answer = with_node(config, async |mut client| {
        Ok::<_, Refused>(client.deploy_model(request).await?.into_inner())
    })?;
    let d = answer.deployment.unwrap_or_default();
    println!(
        "deployed `{}` ({}, plugin {}): {}",
        d.model_name,
        d.kind,
        if d.plugin.is_empty() { "-" } else { &d.plugin },
        d.state
    );
    Ok(())
}

/// `undeploy`.
pub fn undeploy(config: &Config, name: &str) -> Result<()> {
    let request = pb::UndeployModelRequest {
        deployment_id: name.to_string(),
    };
    with_node(config, async |mut client| {
        client.undeploy_model(request).await?;
        Ok::<_, Refused>(())
    })?;
    println!("stopped `{name}`");
    Ok(())
}

/// `deployments list`.
pub fn list(config: &Config, json_out: bool) -> Result<()> {
    let list = with_node(config, async |mut client| {
        Ok::<_, Refused>(
            client
                .list_deployments(pb::ListDeploymentsRequest {})
                .await?
                .into_inner()
                .deployments,
        )
    })?;
    if json_out {
        let rows: Vec<_> = list.iter().map(convert::deployment_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no deployments");
        return Ok(());
    }
    let mut out = table(&["NAME", "STATUS", "KIND", "PLUGIN", "PATH", "MESSAGE"]);
    for d in list {
        let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
        out.add_row([
            d.model_name,
            d.state,
            d.kind,
            dash(d.plugin),
            d.model_path,
            d.message,
        ]);
    }
    print_table(&out);
    Ok(())
}
