//! The node core: the one [`Node`] value every transport (the OpenAI HTTP API, the CyxWiz gRPC
//! services, the operator's control socket) is a thin adapter over. It owns the
//! configuration, identity and central link, store, plugin registry, deployments, metrics
//! and access control; its methods say what the node does ([`Node::deploy`],
//! [`Node::undeploy`], [`Node::model`], [`Node::status`],
//! [`Node::history`], …) and fail with one [`NodeError`]; [`Node::subscribe`] streams its
//! state changes ([`Event`]) to dashboards and streaming RPCs.

mod error;
mod events;
mod keys;
mod operations;
mod serving;

pub use error::{Kind as ErrorKind, NodeError, NodeResult, KIND_METADATA};
pub use events::{Event, Events};
pub use operations::{inside, valid_name, DeploymentCounts, NodeStatus, PluginCounts};

use crate::{
    access::Access,
    audit::AuditLog,
    central::CentralLink,
    config::Config,
    deployments::Deployments,
    devices::Inventory,
    jobs::Jobs,
    metrics::Metrics,
    plugins::{PluginState, Registry},
    store::Store,
};
use std::sync::{Arc, Mutex};

/// The node: everything its transports share.
#[derive(Debug)]
pub struct Node {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The hardware probed at start.
    pub inventory: Arc<Inventory>,
    /// The node id (adopted from the central server once registered) and the central link.
    pub central: Arc<CentralLink>,
    /// Deployments and their status.
    pub deployments: Arc<Deployments>,
    /// The plugin registry deployments load through.
    pub registry: Arc<Registry>,
    /// The database (keys, audit log, metrics history).
    pub store: Mutex<Store>,
    /// Request and system metrics.
    pub metrics: Arc<Metrics>,
    /// API keys (the keyring) and per-key rate limits.
    pub access: Arc<Access>,
    /// Where audit events go (off the request path).
    pub audit_log: Arc<AuditLog>,
    /// Whether API callers need a key (`[api] require_auth`, or HTTP beyond loopback).
    pub auth_required: bool,
    /// Training jobs.
    pub jobs: Arc<Jobs>,
    /// When the node started.
    pub started: std::time::Instant,
    events: tokio::sync::broadcast::Sender<Event>,
}

/// What a [`Node`] is built from.
#[derive(Debug)]
pub struct Parts {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The hardware probed at start.
    pub inventory: Arc<Inventory>,
    /// The central link.
    pub central: Arc<CentralLink>,
    /// The deployments.
    pub deployments: Arc<Deployments>,
    /// The plugin registry.
    pub registry: Arc<Registry>,
    /// The database.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Access control.
    pub access: Arc<Access>,
    /// The audit log writer.
    pub audit_log: Arc<AuditLog>,
    /// Training jobs.
    pub jobs: Arc<Jobs>,
}

impl Node {
    /// The node made of `parts`.
    pub fn new(parts: Parts) -> Self {
        Self {
            auth_required: parts.config.api.auth_required(),
            config: parts.config,
            inventory: parts.inventory,
            central: parts.central,
            deployments: parts.deployments,
            registry: parts.registry,
            store: Mutex::new(parts.store),
            metrics: parts.metrics,
            access: parts.access,
            audit_log: parts.audit_log,
            jobs: parts.jobs,
            started: std::time::Instant::now(),
            events: tokio::sync::broadcast::channel(events::CAPACITY).0,
        }
    }

    /// A scratch node on `deployments` with its database in `dir` and no plugins, for tests.
    #[cfg(test)]
    pub(crate) fn scratch(config: Config, deployments: Deployments, dir: &std::path::Path) -> Self {
        let db = dir.join("node.db");
        let settings = crate::jobs::Settings::for_config(&config);
        Self::new(Parts {
            config: Arc::new(config),
            inventory: Arc::new(Inventory::default()),
            central: Arc::new(CentralLink::new("scratch".into(), "")),
            deployments: Arc::new(deployments),
            registry: Arc::new(Registry::discover(&[], Default::default())),
            store: Store::open(&db).expect("a scratch database opens"),
            metrics: Arc::default(),
            access: Arc::new(Access::new(Arc::new(
                crate::access::keyring::Keyring::open(&db).expect("a scratch keyring opens"),
            ))),
            audit_log: Arc::new(AuditLog::disabled()),
            jobs: Jobs::start(
                settings,
                Store::open(&db).expect("a scratch database opens"),
                Default::default(),
            )
            .expect("a scratch executor starts"),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.node.name
    }

    /// Queues an audit event (never blocks; caller text is capped and escaped).
    pub fn audit(&self, kind: &'static str, subject: &str, detail: &str) {
        self.audit_log.record(kind, subject, detail);
    }

    /// Plugins loaded and skipped at start.
    pub fn plugin_counts(&self) -> PluginCounts {
        let entries = self.registry.entries();
        let failed = entries
            .iter()
            .filter(|e| matches!(e.state, PluginState::Failed(_)))
            .count();
        PluginCounts {
            loaded: entries.len() - failed,
            failed,
        }
    }

    /// The node's state changes from now on.
    pub fn subscribe(&self) -> Events {
        Events::new(self.events.subscribe(), self.deployments.subscribe())
    }

    /// Tells subscribers the node is stopping.
    pub fn announce_shutdown(&self) {
        let _ = self.events.send(Event::ShuttingDown);
    }

    /// Locks the database (a poisoned lock is taken over: the store has no invariants a
    /// panicked holder could break half-way).
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}
