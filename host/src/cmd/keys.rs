//! `cyxwiz-node keys create|list|revoke`: API keys. With a node running they go through its
//! `DaemonService` (CreateAPIKey, ListAPIKeys, RevokeAPIKey), so the node audits the change
//! and its keyring sees it at once; with none running they read and write the database
//! directly (keys can be made before the first start). Use counts reach the database every
//! 10 s.

use super::{print_table, runtime, table, Refused};
use anyhow::Result;
use clap::Subcommand;
use cyxwiz_node::{
    config::Config,
    control::{self, convert},
    daemon,
    store::{keys::Scope, Store},
};
use cyxwiz_proto::daemon as pb;

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
    let rt = runtime()?;
    let socket = control::socket_path(&config.data_dir);
    match rt.block_on(control::client::connect(&socket)) {
        Ok(client) => rt.block_on(through_node(client, command)),
        Err(_) => on_database(config, command),
    }
}

fn clean(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

async fn through_node(mut client: control::client::Client, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            models,
            rpm,
        } => {
            let request = pb::CreateApiKeyRequest {
                name,
                rate_limit_rpm: i32::try_from(rpm)?,
                scopes: clean(scopes),
                models: clean(models),
            };
            let answer = client
                .create_api_key(request)
                .await
                .map_err(Refused::from)?
                .into_inner();
            let info = answer.key_info.unwrap_or_default();
            created(&answer.key, &info.name, &info.key_prefix);
        }
        KeysCommand::List { json } => {
            let keys = client
                .list_api_keys(pb::ListApiKeysRequest {})
                .await
                .map_err(Refused::from)?
                .into_inner()
                .keys;
            print_keys(keys.iter().map(convert::key_json).collect(), json)?;
        }
        KeysCommand::Revoke { name } => {
            client
                .revoke_api_key(pb::RevokeApiKeyRequest {
                    key_id: name.clone(),
                })
                .await
                .map_err(Refused::from)?;
            println!("revoked key `{name}`");
        }
    }
    Ok(())
}

fn on_database(config: &Config, command: KeysCommand) -> Result<()> {
    daemon::prepare_data_dir(config)?;
    let store = Store::open(&config.database_path())?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            models,
            rpm,
        } => {
            let scopes = clean(scopes)
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let (key, record) = store.create_key(&name, &scopes, &clean(models), rpm)?;
            created(&key, &record.name, &record.prefix);
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys()?;
            let rows = keys
                .iter()
                .map(|k| convert::key_json(&convert::key(k)))
                .collect();
            print_keys(rows, json)?;
        }
        KeysCommand::Revoke { name } => {
            store.revoke_key(&name)?;
            println!("revoked key `{name}`");
        }
    }
    Ok(())
}

fn created(key: &str, name: &str, prefix: &str) {
    println!("{key}");
    eprintln!("created key `{name}` ({prefix}…); store it now, it is not shown again");
}

/// Prints keys as JSON or a table.
fn print_keys(keys: Vec<convert::KeyRow>, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(());
    }
    if keys.is_empty() {
        println!("no API keys (create one with `cyxwiz-node keys create --name NAME`)");
        return Ok(());
    }
    let mut out = table(&[
        "PREFIX",
        "NAME",
        "SCOPES",
        "MODELS",
        "RPM",
        "CREATED",
        "LAST USED",
        "REQUESTS",
        "STATUS",
    ]);
    let list = |items: &[String], empty: &str| {
        if items.is_empty() {
            empty.to_string()
        } else {
            items.join(",")
        }
    };
    for k in keys {
        out.add_row([
            k.prefix,
            k.name,
            list(&k.scopes, "-"),
            list(&k.models, "*"),
            if k.rpm == 0 {
                "-".to_string()
            } else {
                k.rpm.to_string()
            },
            k.created_at,
            k.last_used_at.unwrap_or_else(|| "never".to_string()),
            k.request_count.to_string(),
            k.revoked_at
                .map_or_else(|| "active".to_string(), |at| format!("revoked {at}")),
        ]);
    }
    if let Some(column) = out.column_mut(7) {
        column.set_cell_alignment(comfy_table::CellAlignment::Right);
    }
    print_table(&out);
    Ok(())
}
