//! Reading a plugin's own JSON files (model descriptions, configs) into serde types, with
//! errors that name the file, the field and the position.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads the JSON file at `path` into a `T` (derive `serde::Deserialize` on it; the SDK
/// re-exports [`serde`](crate::serde)).
///
/// Errors: `NOT_FOUND` for a missing file, `INVALID_INPUT` for a directory, unreadable file,
/// malformed JSON or a value of the wrong shape, with a message such as
/// `m.scale: `width`: invalid type: string "4", expected u32 at line 1 column 27`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::from_io(path, &e))?;
    let invalid = |field: String, err: serde_json::Error| {
        Error::invalid_input(format!("{}: {field}{err}", path.display()))
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            at if at == "." => String::new(),
            at => format!("`{at}`: "),
        };
        invalid(field, e.into_inner())
    })?;
    de.end().map_err(|e| invalid(String::new(), e))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Scale {
        factor: f32,
        width: std::num::NonZeroU32,
    }

    fn read(text: &str) -> Result<Scale> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.scale");
        std::fs::write(&path, text).unwrap();
        read_json(&path)
    }

    #[test]
    fn reads_a_typed_value() {
        let scale = read(r#"{"factor": 2, "width": 4, "comment": "ignored"}"#).unwrap();
        assert_eq!(scale.factor, 2.0);
        assert_eq!(scale.width.get(), 4);
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_position() {
        let err = read(r#"{"factor": 2, "width": "4"}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT);
        assert!(
            err.message.contains("m.scale: `width`: invalid type"),
            "{err}"
        );
        assert!(err.message.contains("line 1 column 26"), "{err}");

        let err = read(r#"{"factor": 2, "width": 0}"#).unwrap_err();
        assert!(err.message.contains("`width`: invalid value"), "{err}");

        let err = read(r#"{"factor": 2}"#).unwrap_err();
        assert!(err.message.contains("missing field `width`"), "{err}");

        let err = read("{\n  \"factor\": 2,\n  oops").unwrap_err();
        assert!(err.message.contains("line 3 column 3"), "{err}");

        let err = read(r#"{"factor": 2, "width": 1} trailing"#).unwrap_err();
        assert!(err.message.contains("trailing characters"), "{err}");
        assert!(!err.message.contains("``"), "{err}");
    }

    #[test]
    fn missing_files_and_directories_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_json::<Scale>(&dir.path().join("none.scale")).unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NOT_FOUND, "{missing}");
        let directory = read_json::<Scale>(dir.path()).unwrap_err();
        assert_eq!(directory.kind, ErrorKind::INVALID_INPUT, "{directory}");
        assert!(directory.message.contains("is a directory"), "{directory}");
    }

    #[test]
    fn binary_garbage_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("noise.scale");
        std::fs::write(&path, [0x89, b'P', b'N', b'G', 0, 0xff]).unwrap();
        let err = read_json::<Scale>(&path).unwrap_err();
        assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    }
}
