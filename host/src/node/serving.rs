//! Serving requests: the model a caller may use by name. Every endpoint (tensors, chat,
//! completions, embeddings, on HTTP and gRPC) takes the model's worker from [`Node::model`]
//! and calls it directly; its errors become [`NodeError`]s.

use super::{Node, NodeError, NodeResult};
use crate::{access::Caller, deployments::Lookup, models::ModelWorker};
use std::sync::Arc;

impl Node {
    /// The serving worker of `name` (a deployment name or alias), if the caller may use it.
    /// A model the caller may not use is answered exactly like one that does not exist
    /// (not found), whatever its state, so a restricted key learns nothing about the others.
    pub fn model(&self, caller: &Caller, name: &str) -> NodeResult<Arc<ModelWorker>> {
        if name.is_empty() {
            return Err(NodeError::invalid_param("model", "the model name is empty"));
        }
        let lookup = self.deployments.lookup(name);
        let allowed = caller.may_use(name)
            || match &lookup {
                Lookup::Ready(worker) => caller.may_use(worker.name()),
                Lookup::Unknown => false,
                Lookup::Loading | Lookup::Unavailable(_) => self
                    .deployments
                    .snapshot()
                    .iter()
                    .find(|d| d.name == name || d.aliases.iter().any(|a| a == name))
                    .is_some_and(|d| caller.may_use(&d.name)),
            };
        match lookup {
            _ if !allowed => Err(NodeError::unknown_model(name)),
            Lookup::Ready(worker) => Ok(worker),
            other => Err(NodeError::from_lookup(other, name)),
        }
    }
}
