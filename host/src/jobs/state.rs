//! A job's lifecycle: the states, which moves between them are allowed, and their spelling
//! (the same in SQLite, the CLI, the HTTP API and the README).

use serde::{Deserialize, Serialize};

/// Where a job is. `queued → preparing → running ⇄ paused → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for a free slot.
    Queued,
    /// Loading its dataset and building the network.
    Preparing,
    /// Training.
    Running,
    /// Stopped at a checkpoint until resumed.
    Paused,
    /// Finished; its weights are in `weights.safetensors`.
    Succeeded,
    /// Ended by an error (the job's `error` says which).
    Failed,
    /// Cancelled by a caller; partial weights are kept when a checkpoint existed.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Preparing,
        JobState::Running,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Preparing => "preparing",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a state's name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for the end states, which never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Whether a job may move from `self` to `to`. Queued is re-entered when a restarted node
    /// resumes a job from its checkpoint.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        match (self, to) {
            (from, _) if from.is_terminal() => false,
            (_, Failed | Cancelled) => true,
            (Queued, Preparing) => true,
            (Preparing, Running) => true,
            (Running, Paused) | (Paused, Running) => true,
            (Preparing | Running | Paused, Queued) => true,
            (Paused, Preparing) => true,
            (Running, Succeeded) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_terminal_states_stay() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            if s.is_terminal() {
                assert!(JobState::ALL.iter().all(|t| !s.can_move_to(*t)));
            }
        }
        assert!(JobState::Running.can_move_to(JobState::Paused));
        assert!(JobState::Paused.can_move_to(JobState::Running));
        assert!(!JobState::Queued.can_move_to(JobState::Succeeded));
        assert_eq!(
            serde_json::to_string(&JobState::Cancelled).unwrap(),
            "\"cancelled\""
        );
    }
}
