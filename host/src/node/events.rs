//! The node's event stream: state changes (a deployment's status, the node stopping) for
//! dashboards and streaming RPCs, over bounded tokio broadcast channels. A subscriber that
//! falls behind skips what it missed (it is told how many) rather than slowing the node.

use crate::deployments::Change;
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// Events a slow subscriber may fall behind by before it skips.
pub(super) const CAPACITY: usize = 256;

/// A change of the node's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A deployment changed status.
    Deployment(Change),
    /// The subscriber fell behind and missed this many events; re-read the state.
    Lagged(u64),
    /// The node is stopping.
    ShuttingDown,
}

/// A subscription to the node's events ([`super::Node::subscribe`]).
#[derive(Debug)]
pub struct Events {
    node: Receiver<Event>,
    deployments: Receiver<Change>,
}

impl Events {
    pub(super) fn new(node: Receiver<Event>, deployments: Receiver<Change>) -> Self {
        Self { node, deployments }
    }

    /// The next event; `None` once the node is gone.
    pub async fn next(&mut self) -> Option<Event> {
        let lagged = |e: RecvError| match e {
            RecvError::Lagged(n) => Some(Event::Lagged(n)),
            RecvError::Closed => None,
        };
        tokio::select! {
            e = self.node.recv() => e.map_or_else(lagged, Some),
            c = self.deployments.recv() => c.map_or_else(lagged, |c| Some(Event::Deployment(c))),
        }
    }
}
