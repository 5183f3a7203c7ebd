//! The API-key RPCs of `DaemonService`: list, create and revoke the keys of the node's HTTP
//! API. The RPC methods themselves (in [`super::service`]) only delegate here.

use super::{
    checks::{bounded, bounded_list, invalid},
    convert,
    service::VIA,
};
use crate::{
    node::{Node, NodeError},
    store::keys::Scope,
};
use cyxwiz_proto::daemon as pb;
use std::sync::Arc;
use tonic::Status;

/// `ListApiKeys`: every key, without its secret.
pub(super) async fn list(node: &Arc<Node>) -> Result<pb::ListApiKeysResponse, Status> {
    let keys = node.keys().await?;
    Ok(pb::ListApiKeysResponse {
        keys: keys.iter().map(convert::key).collect(),
    })
}

/// `CreateApiKey`: a new key with its scopes, models and rate limit; the secret is in the
/// answer only.
pub(super) async fn create(
    node: &Arc<Node>,
    req: pb::CreateApiKeyRequest,
) -> Result<pb::CreateApiKeyResponse, Status> {
    bounded("name", &req.name)?;
    bounded_list("scopes", &req.scopes)?;
    bounded_list("models", &req.models)?;
    let rpm = u32::try_from(req.rate_limit_rpm).map_err(|_| {
        invalid(
            "rate_limit_rpm",
            format!(
                "rate_limit_rpm must be at least 0, got {}",
                req.rate_limit_rpm
            ),
        )
    })?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| Scope::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(NodeError::from)?;
    let models: Vec<String> = req
        .models
        .into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    let (key, record) = node.create_key(VIA, req.name, scopes, models, rpm).await?;
    Ok(pb::CreateApiKeyResponse {
        success: true,
        key,
        key_info: Some(convert::key(&record)),
        error_message: String::new(),
    })
}

/// `RevokeApiKey`: revokes the active key whose name is `name`.
pub(super) async fn revoke(
    node: &Arc<Node>,
    name: String,
) -> Result<pb::RevokeApiKeyResponse, Status> {
    bounded("key_id", &name)?;
    node.revoke_key(VIA, name).await?;
    Ok(pb::RevokeApiKeyResponse {
        success: true,
        error_message: String::new(),
    })
}
