//! Subcommands of the binary that talk to the store or to the running daemon: `keys`
//! (API keys in the database) and `deploy` / `undeploy` / `deployments` (the daemon's
//! control socket), `status` (the daemon's identity and central-server link).

pub mod deploy;
pub mod keys;
pub mod status;
