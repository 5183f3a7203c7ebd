//! Sending one outbox row: decode its request, fill in what is known only now (the node id,
//! the weights URL), call the RPC, and judge the answer (acknowledged, refused for good, or
//! worth retrying).

use cyxwiz_proto::protocol::{
    job_reservation_service_client::JobReservationServiceClient,
    job_status_service_client::JobStatusServiceClient, node_service_client::NodeServiceClient,
    Error, ReportJobCompleteFromNodeRequest, ReportJobResultRequest, ReportProgressRequest,
    ReportReservationEndFromNodeRequest, StatusCode, UpdateJobStatusRequest,
};
use prost::Message;
use tonic::{service::interceptor::InterceptedService, transport::Channel, Code};

use crate::central::Bearer;
use crate::store::outbox::OutboxRow;
use crate::store::reports::Kind;

type Chan = InterceptedService<Channel, Bearer>;

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took it.
    Acked,
    /// The server will never take it (the reason).
    Refused(String),
    /// Try again later; `unreachable` when the server could not be reached at all.
    Retry {
        /// What failed.
        error: String,
        /// The server is down or unreachable.
        unreachable: bool,
    },
}

/// The central server's services the reports go to, on one channel.
#[derive(Clone)]
pub struct Clients {
    node: NodeServiceClient<Chan>,
    status: JobStatusServiceClient<Chan>,
    reservation: JobReservationServiceClient<Chan>,
}

/// Judges a failed call.
pub fn judge_status(status: &tonic::Status) -> Outcome {
    let error = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!(
            "{:?}: {}",
            status.code(),
            crate::audit::clean(status.message(), 300)
        )
    };
    match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::PermissionDenied | Code::Unimplemented => {
            Outcome::Refused(error)
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            Outcome::Retry {
                error,
                unreachable: true,
            }
        }
        _ => Outcome::Retry {
            error,
            unreachable: false,
        },
    }
}

/// Judges a reply's own status and error (the reservation service answers some refusals in
/// the body: 404 for an unknown reservation, 403 for another node's).
pub fn judge_reply(status: i32, error: Option<&Error>, message: &str) -> Outcome {
    let ok =
        status == StatusCode::StatusSuccess as i32 || status == StatusCode::StatusUnknown as i32;
    let code = error.map_or(0, |e| e.code);
    if ok && code == 0 {
        return Outcome::Acked;
    }
    let text = error
        .map(|e| e.message.as_str())
        .filter(|m| !m.is_empty())
        .unwrap_or(message);
    let why = format!(
        "status {status}, error code {code}: {}",
        crate::audit::clean(text, 300)
    );
    if matches!(code, 400 | 403 | 404) {
        Outcome::Refused(why)
    } else if ok {
        // A success with a stray error code that is no refusal: taken.
        Outcome::Acked
    } else {
        Outcome::Retry {
            error: why,
            unreachable: false,
        }
    }
}

fn decode<M: Message + Default>(row: &OutboxRow) -> Result<M, Outcome> {
    M::decode(row.payload.as_slice())
        .map_err(|e| Outcome::Refused(format!("the stored report cannot be read: {e}")))
}

impl Clients {
    /// Clients on `channel`.
    pub fn new(channel: Chan) -> Self {
        Self {
            node: NodeServiceClient::new(channel.clone()),
            status: JobStatusServiceClient::new(channel.clone()),
            reservation: JobReservationServiceClient::new(channel),
        }
    }

    /// Sends `row` as node `node_id`; `weights_base` (`http://host:port/v1`) makes
    /// ReportJobResult's weights URL.
    pub async fn send(&mut self, row: &OutboxRow, node_id: &str, weights_base: &str) -> Outcome {
        match self.try_send(row, node_id, weights_base).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn try_send(
        &mut self,
        row: &OutboxRow,
        node_id: &str,
        weights_base: &str,
    ) -> Result<Outcome, Outcome> {
        let node_id = node_id.to_owned();
        let reply = match row.kind {
            Kind::Started => {
                let mut r: ReportProgressRequest = decode(row)?;
                r.node_id = node_id.clone();
                if let Some(s) = r.status.as_mut() {
                    s.current_node_id = node_id;
                }
                self.node.report_progress(r).await.map(|a| {
                    let a = a.into_inner();
                    judge_reply(a.status, a.error.as_ref(), "")
                })
            }
            Kind::Epoch => {
                let mut r: UpdateJobStatusRequest = decode(row)?;
                r.node_id = node_id;
                self.status.update_job_status(r).await.map(|a| {
                    let a = a.into_inner();
                    judge_reply(a.status, a.error.as_ref(), "")
                })
            }
            Kind::Result | Kind::Assigned => {
                let mut r: ReportJobResultRequest = decode(row)?;
                r.node_id = node_id;
                if !r.model_weights_hash.is_empty() && !weights_base.is_empty() {
                    r.model_weights_uri = format!("{weights_base}/jobs/{}/weights", r.job_id);
                }
                self.status.report_job_result(r).await.map(|a| {
                    let a = a.into_inner();
                    judge_reply(a.status, a.error.as_ref(), "")
                })
            }
            Kind::Complete => {
                let mut r: ReportJobCompleteFromNodeRequest = decode(row)?;
                r.node_id = node_id;
                self.reservation
                    .report_job_complete_from_node(r)
                    .await
                    .map(|a| {
                        let a = a.into_inner();
                        judge_reply(a.status, a.error.as_ref(), &a.message)
                    })
            }
            Kind::ReservationEnd => {
                let mut r: ReportReservationEndFromNodeRequest = decode(row)?;
                r.node_id = node_id;
                self.reservation
                    .report_reservation_end_from_node(r)
                    .await
                    .map(|a| {
                        let a = a.into_inner();
                        judge_reply(a.status, a.error.as_ref(), &a.message)
                    })
            }
        };
        Ok(reply.unwrap_or_else(|s| judge_status(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_and_outages_are_retried() {
        for code in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(
                matches!(
                    judge_status(&tonic::Status::new(code, "x")),
                    Outcome::Refused(_)
                ),
                "{code:?}"
            );
        }
        assert_eq!(
            judge_status(&tonic::Status::unavailable("down")),
            Outcome::Retry {
                error: "Unavailable: down".into(),
                unreachable: true
            }
        );
        assert!(matches!(
            judge_status(&tonic::Status::unauthenticated("bad token")),
            Outcome::Retry {
                unreachable: false,
                ..
            }
        ));
        assert_eq!(judge_reply(1, None, ""), Outcome::Acked);
        assert_eq!(judge_reply(0, None, ""), Outcome::Acked);
        let missing = Error {
            code: 404,
            message: "Reservation not found".into(),
            details: String::new(),
        };
        assert!(matches!(
            judge_reply(2, Some(&missing), ""),
            Outcome::Refused(m) if m.contains("Reservation not found")
        ));
        assert!(matches!(
            judge_reply(2, None, "busy"),
            Outcome::Retry {
                unreachable: false,
                ..
            }
        ));
    }
}
