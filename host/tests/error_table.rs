//! Walks every node error kind through the HTTP and the gRPC mapping and checks both against
//! README's "Errors" table, so the table and the mappings cannot drift apart.

use cyxwiz_node::{
    node::{ErrorKind, NodeError},
    openai::ApiError,
};

/// The README table's rows: kind -> (HTTP status, OpenAI type, gRPC code name).
fn readme_rows() -> Vec<(String, u16, String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md is readable");
    let section = readme
        .split("## Errors")
        .nth(1)
        .expect("README has an `## Errors` section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| kind"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "row {l:?}");
            (
                cells[0].to_string(),
                cells[1].parse().expect("an HTTP status"),
                cells[2].trim_matches('`').to_string(),
                cells[3].trim_matches('`').to_string(),
            )
        })
        .collect()
}

/// tonic's code as the protocol spells it (`InvalidArgument` -> `INVALID_ARGUMENT`).
fn screaming(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn every_kind_maps_to_the_readme_row_on_http_and_grpc() {
    let rows = readme_rows();
    assert_eq!(rows.len(), ErrorKind::ALL.len(), "one README row per kind");
    for kind in ErrorKind::ALL {
        let error = NodeError::new(kind, format!("a {kind} failure"));
        let http = ApiError::from(error.clone());
        let grpc = tonic::Status::from(error);
        let row = rows
            .iter()
            .find(|r| r.0 == kind.name())
            .unwrap_or_else(|| panic!("no README row for `{kind}`"));
        assert_eq!(http.status.as_u16(), row.1, "{kind}: HTTP status");
        assert_eq!(http.kind, row.2, "{kind}: OpenAI type");
        assert_eq!(screaming(grpc.code()), row.3, "{kind}: gRPC code");
        // The caller's message survives both (an internal error's detail never does).
        if kind != ErrorKind::Internal {
            assert!(http.message.contains("failure"), "{kind}");
            assert!(grpc.message().contains("failure"), "{kind}");
        }
        // The CLI reads the daemon's status back to the same kind, even where kinds share a
        // code, and prints it on one line.
        let back = NodeError::from_status(&grpc);
        assert_eq!(back.kind, kind);
        let line = back.cli_line();
        assert!(line.starts_with(&format!("error ({kind}): ")), "{line}");
        assert!(!line.contains('\n'));
    }
}

#[test]
fn retry_after_follows_the_kind_on_http() {
    for kind in ErrorKind::ALL {
        let http = ApiError::from(NodeError::new(kind, "x"));
        assert_eq!(http.retry_after, kind.retry_after(), "{kind}");
    }
}
