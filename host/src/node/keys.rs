//! The node's API keys as operators manage them (the control socket today, a dashboard
//! next): list, create, revoke (the store audits each change). The running keyring notices a change on its
//! next request (`access::keyring` re-reads the database when it changes).

use super::{ErrorKind, Node, NodeError, NodeResult};
use crate::{
    access::{KeyRecord, Scope},
    store::{keys::KeyError, StoreError},
};
use std::sync::Arc;

impl From<KeyError> for NodeError {
    fn from(e: KeyError) -> Self {
        let kind = match &e {
            KeyError::Exists(_) => ErrorKind::AlreadyExists,
            KeyError::NotFound(_) => ErrorKind::NotFound,
            KeyError::BadName(_) | KeyError::BadScope(_) => ErrorKind::InvalidInput,
            KeyError::Random(_) | KeyError::Store(_) => return NodeError::internal(e),
        };
        NodeError::new(kind, e.to_string())
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        NodeError::internal(e)
    }
}

impl Node {
    /// Runs `work` on the database off the async threads.
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Node) -> NodeResult<T> + Send + 'static,
    ) -> NodeResult<T> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || work(&node))
            .await
            .map_err(|e| NodeError::internal(format!("database task failed: {e}")))?
    }

    /// Every key, newest first (revoked ones included).
    pub async fn keys(self: &Arc<Self>) -> NodeResult<Vec<KeyRecord>> {
        self.with_store(|node| Ok(node.store().list_keys()?)).await
    }

    /// Creates key `name` with `scopes` (empty: `inference`), limited to `models` (empty:
    /// every model) and `rpm` requests per minute (0: no limit), for an operator who came
    /// by `via`. Returns the secret (shown once) and the record.
    pub async fn create_key(
        self: &Arc<Self>,
        via: &'static str,
        name: String,
        scopes: Vec<Scope>,
        models: Vec<String>,
        rpm: u32,
    ) -> NodeResult<(String, KeyRecord)> {
        tracing::info!(key = %name.escape_debug(), via, "creating an API key");
        self.with_store(move |node| Ok(node.store().create_key(&name, &scopes, &models, rpm)?))
            .await
    }

    /// Revokes key `name`; it stops working on its next request.
    pub async fn revoke_key(self: &Arc<Self>, via: &'static str, name: String) -> NodeResult<()> {
        tracing::info!(key = %name.escape_debug(), via, "revoking an API key");
        self.with_store(move |node| Ok(node.store().revoke_key(&name)?))
            .await
    }
}
