//! What the central server must know of this node's work ([`central::Workload`]): the network
//! jobs queued or running here (heartbeats' `active_jobs`) and cancelling one it names in
//! `jobs_to_cancel`. An Engine's reservation counts as work while it lasts, so the central
//! server keeps the node busy and does not book it twice.

use std::sync::Arc;

use crate::central;
use crate::jobs::Jobs;

/// The node's jobs as heartbeats report them.
#[derive(Clone)]
pub struct NetworkWork {
    /// The executor.
    pub jobs: Arc<Jobs>,
    /// The Engines' reservations: one with no job running still keeps the node busy.
    pub p2p: Arc<super::P2p>,
}

impl central::Workload for NetworkWork {
    fn active_jobs(&self) -> Vec<String> {
        let mut ids = self.jobs.active_network_jobs();
        for r in self.p2p.active_reservations() {
            if !ids
                .iter()
                .any(|id| id == &r.id || id.starts_with(&format!("{}_", r.id)))
            {
                ids.push(r.id);
            }
        }
        ids
    }

    fn cancel(&self, job_id: &str) -> bool {
        self.jobs.cancel_network_job(job_id)
    }
}
