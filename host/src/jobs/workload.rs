//! What the central server must know of this node's work ([`central::Workload`]): the network
//! jobs queued or running here (heartbeats' `active_jobs`) and cancelling one it names in
//! `jobs_to_cancel`.

use std::sync::Arc;

use super::executor::Jobs;
use crate::central;

/// The node's jobs as heartbeats report them.
#[derive(Clone)]
pub struct NetworkWork {
    /// The executor.
    pub jobs: Arc<Jobs>,
}

impl central::Workload for NetworkWork {
    fn active_jobs(&self) -> Vec<String> {
        self.jobs.active_network_jobs()
    }

    fn cancel(&self, job_id: &str) -> bool {
        self.jobs.cancel_network_job(job_id)
    }
}
