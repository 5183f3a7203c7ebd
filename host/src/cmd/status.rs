//! `cyxwiz-node status`: the running node's id, central-server connection (state, last
//! heartbeat, last error), gRPC ports and deployments, read over the control socket.

use anyhow::Result;
use cyxwiz_node::{config::Config, server::control};
use serde_json::Value;

fn ago(then: &Value) -> String {
    let Some(t) = then.as_u64() else {
        return "never".to_string();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}s ago", now.saturating_sub(t))
}

/// `status`.
pub fn run(config: &Config, json_out: bool) -> Result<()> {
    let answer = control::request(
        &control::socket_path(&config.data_dir),
        "GET",
        "/status",
        None,
    )?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let node = &answer["node"];
    let central = &answer["central"];
    println!("node:            {} ({})", s(&node["name"]), s(&node["id"]));
    println!(
        "version:         {}, up {}s",
        s(&node["version"]),
        node["uptime_seconds"].as_u64().unwrap_or(0)
    );
    let state = s(&central["state"]);
    if state == "standalone" {
        println!("central server:  none (standalone mode)");
    } else {
        println!("central server:  {} ({state})", s(&central["address"]));
        println!(
            "last heartbeat:  {} ({} sent, {} registrations)",
            ago(&central["last_heartbeat"]),
            central["heartbeats"].as_u64().unwrap_or(0),
            central["registrations"].as_u64().unwrap_or(0)
        );
        if let Some(at) = central["next_attempt_at"].as_u64() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            println!("next attempt:    in {}s", at.saturating_sub(now));
        }
    }
    if let Some(e) = central["last_error"].as_str() {
        println!("last error:      {e}");
    }
    let ports: Vec<String> = answer["grpc_ports"]
        .as_array()
        .map(|a| a.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default();
    println!(
        "gRPC ports:      {}",
        if ports.is_empty() {
            "off".to_string()
        } else {
            ports.join(", ")
        }
    );
    let d = &answer["deployments"];
    println!(
        "deployments:     {} ({} ready, {} loading, {} failed)",
        d["total"], d["ready"], d["loading"], d["failed"]
    );
    Ok(())
}
