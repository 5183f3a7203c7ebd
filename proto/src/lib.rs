//! The CyxWiz wire protocol: Rust types, gRPC clients and gRPC servers generated from our own
//! `.proto` files (in `proto/cyxwiz/`, written from `shared/PROTOCOL.md`).
//!
//! This crate owns only the wire shapes. What each RPC means, who serves it and how it is
//! authenticated is left to the host.
//!
//! # Map
//! - [`protocol`]: package `cyxwiz.protocol`, the network-facing services (NodeService,
//!   JobStatusService, JobExecutionService, JobReservationService (node-called part),
//!   P2PTrainingService, InferenceService, DeploymentService, TerminalService) and their messages.
//! - [`daemon`]: package `cyxwiz.daemon`, DaemonService for local control (CLI, TUI, GUI).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of both, for reflection and tests.
//!
//! Each service `FooService` has a client in `foo_service_client::FooServiceClient` and a
//! server trait `foo_service_server::FooService` wrapped by `foo_service_server::FooServiceServer`.
#![deny(missing_docs)]

/// Package `cyxwiz.protocol`: the services the node serves to, and calls on, the network.
#[allow(missing_docs)]
pub mod protocol {
    tonic::include_proto!("cyxwiz.protocol");
}

/// Package `cyxwiz.daemon`: the local control service of the node daemon.
#[allow(missing_docs)]
pub mod daemon {
    tonic::include_proto!("cyxwiz.daemon");
}

/// The encoded `google.protobuf.FileDescriptorSet` of every file in this crate (with source
/// info), for gRPC reflection and for tests that check names and field numbers.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cyxwiz_descriptor.bin"));
