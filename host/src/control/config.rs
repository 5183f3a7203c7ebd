//! The configuration RPCs of `DaemonService`: `GetConfig` and `SetConfig` (the edit of
//! config.toml itself is in [`super::settings`]). The RPC methods themselves (in
//! [`super::service`]) only delegate here.

use super::{checks::blocking, service::VIA, settings};
use crate::node::{Node, NodeError};
use cyxwiz_proto::daemon as pb;
use tonic::Status;

/// `GetConfig`: the settings the node runs with.
pub(super) fn get(node: &Node) -> pb::GetConfigResponse {
    settings::get(&node.config)
}

/// `SetConfig`: edits config.toml; the node applies it when restarted.
pub(super) async fn set(
    node: &Node,
    req: pb::SetConfigRequest,
) -> Result<pb::SetConfigResponse, Status> {
    let path = settings::file_of(&node.config);
    let file = path.clone();
    let changed = blocking(move || {
        settings::apply(&file, &req).map_err(|e| match e {
            settings::SettingsError::Io { .. } => NodeError::internal(e).into(),
            _ => NodeError::invalid(e.to_string()).into(),
        })
    })
    .await?;
    if changed {
        node.audit("config_changed", &path.display().to_string(), VIA);
    }
    Ok(pb::SetConfigResponse {
        success: true,
        error_message: if changed {
            format!("{} updated; restart the node to apply it", path.display())
        } else {
            String::new()
        },
        restart_required: changed,
    })
}
