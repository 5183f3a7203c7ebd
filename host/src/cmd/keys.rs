//! `cyxwiz-node keys create|list|revoke`: API keys in the node's database. The running
//! daemon notices the database changed on its next request, so a new or revoked key counts
//! at once; use counts reach the database every 10 s.

use anyhow::Result;
use clap::Subcommand;
use cyxwiz_node::{
    config::Config,
    daemon,
    store::{keys::Scope, Store},
};

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        /// Name of the key (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: inference (the OpenAI API and gRPC inference),
        /// deploy (create/stop/delete deployments over gRPC), jobs, terminal, admin (all).
        #[arg(long, value_delimiter = ',', default_value = "inference")]
        scopes: Vec<String>,
        /// Models it may use, comma-separated; all when omitted.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests per minute; 0 means unlimited.
        #[arg(long, default_value_t = 0)]
        rpm: u32,
    },
    /// Every key: prefix, name, models, limit, created, last used, requests, status.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the key called NAME; it stops working immediately.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// Runs a `keys` subcommand.
pub fn run(config: &Config, command: KeysCommand) -> Result<()> {
    daemon::prepare_data_dir(config)?;
    let store = Store::open(&config.database_path())?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            models,
            rpm,
        } => {
            let scopes = scopes
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let models: Vec<String> = models
                .into_iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            let (key, record) = store.create_key(&name, &scopes, &models, rpm)?;
            println!("{key}");
            eprintln!(
                "created key `{}` ({}…); store it now, it is not shown again",
                record.name, record.prefix
            );
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            if keys.is_empty() {
                println!("no API keys (create one with `cyxwiz-node keys create --name NAME`)");
                return Ok(());
            }
            println!(
                "{:<14} {:<16} {:<20} {:<20} {:<6} {:<21} {:<21} {:>8} STATUS",
                "PREFIX", "NAME", "SCOPES", "MODELS", "RPM", "CREATED", "LAST USED", "REQUESTS"
            );
            for k in keys {
                let models = if k.models.is_empty() {
                    "*".to_string()
                } else {
                    k.models.join(",")
                };
                let rpm = if k.rpm == 0 {
                    "-".to_string()
                } else {
                    k.rpm.to_string()
                };
                let scopes = k
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{:<14} {:<16} {:<20} {:<20} {:<6} {:<21} {:<21} {:>8} {}",
                    k.prefix,
                    k.name,
                    scopes,
                    models,
                    rpm,
                    k.created_at,
                    k.last_used_at.as_deref().unwrap_or("never"),
                    k.request_count,
                    k.revoked_at
                        .as_deref()
                        .map_or_else(|| "active".to_string(), |at| format!("revoked {at}")),
                );
            }
        }
        KeysCommand::Revoke { name } => {
            store.revoke_key(&name)?;
            println!("revoked key `{name}`");
        }
    }
    Ok(())
}
