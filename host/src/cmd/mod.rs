//! Subcommands of the binary that talk to the running daemon through its control socket
//! (the CyxWiz `DaemonService`, see [`cyxwiz_node::control`]): `deploy` / `undeploy` /
//! `deployments`, `status`, `jobs` (training jobs), and `keys` (through the daemon when one
//! runs, else on the database directly). [`table`] prints their tables; [`Refused`] carries
//! the daemon's refusal as the one CLI line of its error kind.

pub mod deploy;
pub mod jobs;
pub mod keys;
pub mod status;

use anyhow::Result;
use cyxwiz_node::{
    config::Config,
    control::{self, client::Client},
    node::NodeError,
};

/// The daemon refused a request: printed as [`NodeError::cli_line`].
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.cli_line())]
pub struct Refused(pub NodeError);

impl From<tonic::Status> for Refused {
    fn from(status: tonic::Status) -> Self {
        Refused(NodeError::from_status(&status))
    }
}

/// Runs `work` with a client on the running node's control socket.
pub fn with_node<T>(
    config: &Config,
    work: impl AsyncFnOnce(Client) -> Result<T, Refused>,
) -> Result<T> {
    runtime()?.block_on(async {
        let client = control::client::connect(&control::socket_path(&config.data_dir)).await?;
        Ok(work(client).await?)
    })
}

/// A small runtime for one CLI call.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A table with `header`, no borders but spaces between columns (as `ps` and `kubectl` print).
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for i in 0..header.len() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 2));
        }
    }
    table
}

/// Prints `table` without trailing spaces.
pub fn print_table(table: &comfy_table::Table) {
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}
