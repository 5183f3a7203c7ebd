//! Interop checks for the generated protocol: exact wire bytes of fields other CyxWiz
//! components rely on, and the gRPC paths and field numbers recorded in the descriptor set.

use std::collections::{BTreeMap, BTreeSet};

use cyxwiz_proto::{daemon, protocol, FILE_DESCRIPTOR_SET};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

// ---- Wire bytes ----

#[test]
fn node_info_wallet_address_is_field_17() {
    let info = protocol::NodeInfo {
        wallet_address: "w".into(),
        ..Default::default()
    };
    // Tag 17 << 3 | 2 = 138, a two-byte varint.
    assert_eq!(info.encode_to_vec(), [0x8a, 0x01, 0x01, b'w']);
}

#[test]
fn node_info_pricing_is_field_25() {
    let info = protocol::NodeInfo {
        pricing: Some(protocol::NodePricing {
            billing_model: protocol::node_pricing::BillingModel::BillingPerJob as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    // 25 << 3 | 2 = 202; inner: billing_model (field 1, varint) = 2.
    assert_eq!(info.encode_to_vec(), [0xca, 0x01, 0x02, 0x08, 0x02]);
}

#[test]
fn heartbeat_active_jobs_is_field_3() {
    let req = protocol::HeartbeatRequest {
        node_id: "n".into(),
        active_jobs: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    assert_eq!(
        req.encode_to_vec(),
        [0x0a, 0x01, b'n', 0x1a, 0x01, b'a', 0x1a, 0x01, b'b']
    );
}

#[test]
fn assign_job_response_accepted_is_field_3() {
    let resp = protocol::AssignJobResponse {
        accepted: true,
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec(), [0x18, 0x01]);
}

#[test]
fn job_config_map_and_enum_fields() {
    let job = protocol::JobConfig {
        hyperparameters: [("k".to_string(), "v".to_string())].into(),
        required_device: protocol::DeviceType::DeviceCuda as i32,
        ..Default::default()
    };
    // Field 5 map entry {1: "k", 2: "v"}, then field 9 varint 2.
    assert_eq!(
        job.encode_to_vec(),
        [0x2a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x48, 0x02]
    );
}

#[test]
fn infer_request_inputs_are_field_2_with_data_field_4() {
    let req = protocol::InferRequest {
        deployment_id: String::new(),
        inputs: vec![protocol::TensorData {
            shape: vec![1, 3],
            data: vec![0xde, 0xad],
            ..Default::default()
        }],
    };
    // Inner: shape packed (field 2), data (field 4).
    assert_eq!(
        req.encode_to_vec(),
        [0x12, 0x08, 0x12, 0x02, 0x01, 0x03, 0x22, 0x02, 0xde, 0xad]
    );
}

#[test]
fn training_stream_oneof_fields_keep_their_numbers() {
    let cmd = protocol::TrainingCommand {
        command: Some(protocol::training_command::Command::BatchResponse(
            protocol::BatchResponse {
                request_id: 7,
                ..Default::default()
            },
        )),
    };
    // batch_response = 10 (10 << 3 | 2 = 0x52); inner request_id = 2.
    assert_eq!(cmd.encode_to_vec(), [0x52, 0x02, 0x10, 0x07]);

    let cmd = protocol::TrainingCommand {
        command: Some(protocol::training_command::Command::ReservationEnd(true)),
    };
    // reservation_end = 21: 21 << 3 | 0 = 168, a two-byte varint.
    assert_eq!(cmd.encode_to_vec(), [0xa8, 0x01, 0x01]);

    let update = protocol::TrainingUpdate {
        job_id: String::new(),
        timestamp: 0,
        update: Some(protocol::training_update::Update::BatchRequest(
            protocol::BatchRequest {
                split: protocol::DatasetSplit::SplitValidation as i32,
                ..Default::default()
            },
        )),
    };
    // batch_request = 11 (0x5a); inner split = field 3, varint 1.
    assert_eq!(update.encode_to_vec(), [0x5a, 0x02, 0x18, 0x01]);
}

#[test]
fn daemon_status_connection_is_field_3() {
    let resp = daemon::GetStatusResponse {
        central_server_status: daemon::ConnectionStatus::Connected as i32,
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec(), [0x18, 0x03]);
}

#[test]
fn decodes_bytes_from_another_implementation() {
    // RegisterNodeResponse{status: SUCCESS, node_id: "u"} as any proto3 encoder writes it.
    let resp = protocol::RegisterNodeResponse::decode(&[0x08, 0x01, 0x12, 0x01, b'u'][..])
        .expect("valid RegisterNodeResponse");
    assert_eq!(resp.status(), protocol::StatusCode::StatusSuccess);
    assert_eq!(resp.node_id, "u");
}

// ---- Descriptor set ----

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

/// Every gRPC method path, with its (client streaming, server streaming) flags.
fn method_paths(fds: &FileDescriptorSet) -> BTreeMap<String, (bool, bool)> {
    let mut paths = BTreeMap::new();
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                let streaming = (method.client_streaming(), method.server_streaming());
                paths.insert(path, streaming);
            }
        }
    }
    paths
}

fn message<'a>(fds: &'a FileDescriptorSet, package: &str, name: &str) -> &'a DescriptorProto {
    fds.file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("message {package}.{name} not found"))
}

/// A field's type as PROTOCOL.md writes it: `int64`, `repeated string`, `map<string,double>`,
/// or a message/enum's simple name.
fn type_of(msg: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    let simple = |f: &FieldDescriptorProto| match f.r#type() {
        Type::Message | Type::Enum => f
            .type_name()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string(),
        Type::Double => "double".into(),
        Type::Float => "float".into(),
        Type::Int64 => "int64".into(),
        Type::Uint64 => "uint64".into(),
        Type::Int32 => "int32".into(),
        Type::Bool => "bool".into(),
        Type::String => "string".into(),
        Type::Bytes => "bytes".into(),
        other => format!("{other:?}"),
    };
    if field.label() != Label::Repeated {
        return simple(field);
    }
    let entry_name = field.type_name().rsplit('.').next().unwrap_or_default();
    let map_entry = msg
        .nested_type
        .iter()
        .find(|n| n.name() == entry_name && n.options.as_ref().is_some_and(|o| o.map_entry()));
    match map_entry {
        Some(entry) => format!(
            "map<{},{}>",
            simple(&entry.field[0]),
            simple(&entry.field[1])
        ),
        None => format!("repeated {}", simple(field)),
    }
}

/// Checks a message has exactly `expected` fields: (number, name, type).
fn assert_fields(package: &str, name: &str, expected: &[(i32, &str, &str)]) {
    let fds = descriptor_set();
    let msg = message(&fds, package, name);
    let actual: BTreeSet<(i32, String, String)> = msg
        .field
        .iter()
        .map(|f| (f.number(), f.name().to_string(), type_of(msg, f)))
        .collect();
    let expected: BTreeSet<(i32, String, String)> = expected
        .iter()
        .map(|&(n, f, t)| (n, f.to_string(), t.to_string()))
        .collect();
    assert_eq!(actual, expected, "fields of {package}.{name}");
}

#[test]
fn grpc_paths_match_the_contract() {
    let paths = method_paths(&descriptor_set());
    let unary = (false, false);
    let server_stream = (false, true);
    let bidi = (true, true);
    let expected: &[(&str, &[&str], (bool, bool))] = &[
        (
            "cyxwiz.protocol.NodeService",
            &[
                "RegisterNode",
                "Heartbeat",
                "AssignJob",
                "ReportProgress",
                "ReportCompletion",
                "GetNodeMetrics",
                "NotifyJobAccepted",
            ],
            unary,
        ),
        (
            "cyxwiz.protocol.JobStatusService",
            &["UpdateJobStatus", "ReportJobResult"],
            unary,
        ),
        (
            "cyxwiz.protocol.NodeDiscoveryService",
            &["GetNodeInfo"],
            unary,
        ),
        (
            "cyxwiz.protocol.JobExecutionService",
            &[
                "ConnectToNode",
                "DisconnectFromNode",
                "SendJob",
                "PauseTraining",
                "ResumeTraining",
                "CancelTraining",
                "StartNewJob",
            ],
            unary,
        ),
        (
            "cyxwiz.protocol.JobExecutionService",
            &["StreamTrainingMetrics"],
            bidi,
        ),
        (
            "cyxwiz.protocol.JobExecutionService",
            &["DownloadWeights"],
            server_stream,
        ),
        (
            "cyxwiz.protocol.P2PTrainingService",
            &[
                "PauseTraining",
                "ResumeTraining",
                "CancelTraining",
                "StartNewJob",
            ],
            unary,
        ),
        (
            "cyxwiz.protocol.JobReservationService",
            &["ReportJobCompleteFromNode", "ReportReservationEndFromNode"],
            unary,
        ),
        (
            "cyxwiz.protocol.InferenceService",
            &["Infer", "GetModelInfo"],
            unary,
        ),
        (
            "cyxwiz.protocol.DeploymentService",
            &[
                "CreateDeployment",
                "GetDeployment",
                "ListDeployments",
                "StopDeployment",
                "DeleteDeployment",
                "GetDeploymentMetrics",
            ],
            unary,
        ),
        (
            "cyxwiz.protocol.TerminalService",
            &["CreateSession", "ResizeTerminal", "CloseSession"],
            unary,
        ),
        ("cyxwiz.protocol.TerminalService", &["StreamTerminal"], bidi),
        (
            "cyxwiz.daemon.DaemonService",
            &[
                "GetStatus",
                "GetMetrics",
                "ListJobs",
                "GetJob",
                "CancelJob",
                "ListDeployments",
                "DeployModel",
                "UndeployModel",
                "GetDeploymentStatus",
                "ListLocalModels",
                "ScanModels",
                "DeleteModel",
                "ListAPIKeys",
                "CreateAPIKey",
                "RevokeAPIKey",
                "GetConfig",
                "SetConfig",
                "GetEarnings",
                "GetWalletInfo",
                "SetWalletAddress",
                "GetLogs",
                "GetPoolStatus",
                "JoinPool",
                "LeavePool",
                "SetMiningIntensity",
                "StartMining",
                "StopMining",
                "ListMarketplaceModels",
                "GetMarketplaceModel",
                "CancelMarketplaceDownload",
                "Shutdown",
                "Restart",
                "SetAllocations",
                "RetryConnection",
                "DisconnectFromCentral",
                // Node extensions: training jobs (issue 14).
                "SubmitJob",
                "PauseJob",
                "ResumeJob",
            ],
            unary,
        ),
        (
            "cyxwiz.daemon.DaemonService",
            &[
                "StreamMetrics",
                "StreamJobUpdates",
                "StreamLogs",
                "DownloadMarketplaceModel",
                "GetJobLogs",
                "DownloadJobWeights",
            ],
            server_stream,
        ),
    ];
    let mut want = BTreeMap::new();
    for (service, methods, streaming) in expected {
        for method in *methods {
            want.insert(format!("/{service}/{method}"), *streaming);
        }
    }
    assert_eq!(paths, want);
    // Spot checks, spelled out as the peers dial them.
    for path in [
        "/cyxwiz.protocol.NodeService/RegisterNode",
        "/cyxwiz.protocol.NodeService/AssignJob",
        "/cyxwiz.protocol.DeploymentService/CreateDeployment",
        "/cyxwiz.protocol.InferenceService/Infer",
        "/cyxwiz.daemon.DaemonService/GetStatus",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
}

#[test]
fn node_info_fields() {
    assert_fields(
        "cyxwiz.protocol",
        "NodeInfo",
        &[
            (1, "node_id", "string"),
            (2, "name", "string"),
            (3, "version", "Version"),
            (4, "devices", "repeated DeviceCaps"),
            (5, "cpu_cores", "int32"),
            (6, "ram_total", "int64"),
            (7, "ram_available", "int64"),
            (8, "ip_address", "string"),
            (9, "port", "int32"),
            (10, "region", "string"),
            (11, "compute_score", "double"),
            (12, "reputation_score", "double"),
            (13, "total_jobs_completed", "int64"),
            (14, "total_compute_hours", "int64"),
            (15, "average_rating", "double"),
            (16, "staked_amount", "double"),
            (17, "wallet_address", "string"),
            (18, "is_online", "bool"),
            (19, "last_heartbeat", "int64"),
            (20, "uptime_percentage", "double"),
            (21, "supported_formats", "repeated string"),
            (22, "max_model_size", "int64"),
            (23, "supports_terminal_access", "bool"),
            (24, "available_runtimes", "repeated string"),
            (25, "pricing", "NodePricing"),
        ],
    );
}

#[test]
fn deployment_config_fields() {
    assert_fields(
        "cyxwiz.protocol",
        "DeploymentConfig",
        &[
            (1, "deployment_id", "string"),
            (2, "user_id", "string"),
            (3, "type", "DeploymentType"),
            (4, "model", "ModelInfo"),
            (5, "node_id", "string"),
            (6, "requirements", "HardwareRequirements"),
            (7, "max_price_per_hour", "double"),
            (8, "preferred_region", "string"),
            (9, "environment_vars", "map<string,string>"),
            (10, "runtime_params", "map<string,string>"),
            (11, "port", "int32"),
            (12, "enable_terminal", "bool"),
            (13, "gpu_layers", "int32"),
            (14, "context_size", "int32"),
            (15, "batch_size", "int32"),
            (16, "threads", "int32"),
            (17, "server_address", "string"),
        ],
    );
}

#[test]
fn job_config_fields() {
    assert_fields(
        "cyxwiz.protocol",
        "JobConfig",
        &[
            (1, "job_id", "string"),
            (2, "job_type", "JobType"),
            (3, "priority", "JobPriority"),
            (4, "model_definition", "string"),
            (5, "hyperparameters", "map<string,string>"),
            (6, "dataset_uri", "string"),
            (7, "batch_size", "int32"),
            (8, "epochs", "int32"),
            (9, "required_device", "DeviceType"),
            (10, "estimated_memory", "int64"),
            (11, "estimated_duration", "int64"),
            (12, "payment_amount", "double"),
            (13, "payment_address", "string"),
            (14, "escrow_tx_hash", "string"),
            (15, "reservation_duration_minutes", "int32"),
        ],
    );
}

#[test]
fn daemon_status_fields() {
    assert_fields(
        "cyxwiz.daemon",
        "GetStatusResponse",
        &[
            (1, "node_id", "string"),
            (2, "version", "string"),
            (3, "central_server_status", "ConnectionStatus"),
            (4, "uptime_seconds", "int64"),
            (5, "active_jobs", "int32"),
            (6, "active_deployments", "int32"),
            (7, "metrics", "SystemMetrics"),
            (8, "gpu_name", "string"),
            (9, "gpu_count", "int32"),
            // The node's extensions (numbers from 100).
            (100, "node_name", "string"),
            (101, "central", "CentralLinkInfo"),
            (102, "grpc_ports", "repeated int32"),
            (103, "deployment_counts", "DeploymentCounts"),
            (104, "plugins_loaded", "int32"),
            (105, "plugins_failed", "int32"),
            (106, "job_counts", "JobCounts"),
        ],
    );
}

#[test]
fn training_oneofs_are_named_and_complete() {
    let fds = descriptor_set();
    for (name, oneof, members) in [
        (
            "TrainingCommand",
            "command",
            &[1, 2, 3, 4, 5, 10, 11, 20, 21][..],
        ),
        ("TrainingUpdate", "update", &[3, 4, 5, 6, 7, 10, 11][..]),
    ] {
        let msg = message(&fds, "cyxwiz.protocol", name);
        assert_eq!(msg.oneof_decl.len(), 1, "{name} has one oneof");
        assert_eq!(msg.oneof_decl[0].name(), oneof);
        let in_oneof: Vec<i32> = msg
            .field
            .iter()
            .filter(|f| f.oneof_index.is_some())
            .map(|f| f.number())
            .collect();
        assert_eq!(in_oneof, members, "{name}.{oneof} members");
    }
}
