//! API keys on gRPC: `authorization: Bearer KEY` metadata checked against the node's keyring
//! with the scope each RPC needs; a refusal is a node error, mapped to a `tonic::Status` like
//! every other. Keys are required whenever gRPC listens beyond loopback, or
//! `[grpc] require_auth` / `[api] require_auth` is set.

use super::GrpcState;
use crate::{
    access::{Caller, Scope},
    config::Config,
};
use tonic::{Request, Status};

/// Whether gRPC calls must carry a key under `config`.
pub fn required(config: &Config) -> bool {
    let loopback = config
        .grpc
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    config.grpc.require_auth || config.api.require_auth || !loopback
}

impl GrpcState {
    /// The caller of `request`, who must hold `scope`; refusals are audited with the peer's
    /// address.
    pub fn authorize<T>(&self, request: &Request<T>, scope: Scope) -> Result<Caller, Status> {
        let key = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::access::bearer);
        match self.node.access.check(key, scope, self.auth_required) {
            Ok((caller, _)) => Ok(caller),
            Err(denied) => {
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                let (kind, subject) = denied.audit_event();
                self.node
                    .audit(kind, subject, &format!("grpc from {peer}: {denied}"));
                Err(crate::node::NodeError::from(denied).into())
            }
        }
    }
}
