//! `cyxwiz-node status`: the running node's id, central-server connection (state, last
//! heartbeat, last error), gRPC ports and deployments, from `DaemonService.GetStatus`.

use super::{with_node, Refused};
use anyhow::Result;
use cyxwiz_node::{config::Config, control::convert};
use cyxwiz_proto::daemon as pb;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn ago(then: i64) -> String {
    if then == 0 {
        return "never".to_string();
    }
    format!("{}s ago", (now() - then).max(0))
}

/// `status`.
pub fn run(config: &Config, json_out: bool) -> Result<()> {
    let s = with_node(config, async |mut client| {
        Ok::<_, Refused>(
            client
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner(),
        )
    })?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&convert::status_json(&s))?
        );
        return Ok(());
    }
    let dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    let central = s.central.clone().unwrap_or_default();
    println!(
        "node:            {} ({})",
        dash(&s.node_name),
        dash(&s.node_id)
    );
    println!(
        "version:         {}, up {}s",
        dash(&s.version),
        s.uptime_seconds
    );
    if central.state == "standalone" {
        println!("central server:  none (standalone mode)");
    } else {
        println!(
            "central server:  {} ({})",
            dash(&central.address),
            central.state
        );
        println!(
            "last heartbeat:  {} ({} sent, {} registrations)",
            ago(central.last_heartbeat),
            central.heartbeats,
            central.registrations
        );
        if central.next_attempt_at != 0 {
            println!(
                "next attempt:    in {}s",
                (central.next_attempt_at - now()).max(0)
            );
        }
    }
    if !central.last_error.is_empty() {
        println!("last error:      {}", central.last_error);
    }
    let ports: Vec<String> = s.grpc_ports.iter().map(|p| p.to_string()).collect();
    println!(
        "gRPC ports:      {}",
        if ports.is_empty() {
            "off".to_string()
        } else {
            ports.join(", ")
        }
    );
    let d = s.deployment_counts.unwrap_or_default();
    println!(
        "deployments:     {} ({} ready, {} loading, {} failed)",
        d.total, d.ready, d.loading, d.failed
    );
    let j = s.job_counts.unwrap_or_default();
    println!(
        "jobs:            {} running, {} queued, {} paused ({} from the network)",
        j.running, j.queued, j.paused, j.network
    );
    if central.state != "standalone" || j.report_backlog > 0 {
        let refused = if j.reports_failed > 0 {
            format!(", {} refused by the server", j.reports_failed)
        } else {
            String::new()
        };
        println!(
            "reports:         {} waiting to reach the central server{refused}",
            j.report_backlog
        );
    }
    Ok(())
}
