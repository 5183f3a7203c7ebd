//! Serving a file from disk over HTTP: one `Range: bytes=…` (RFC 9110 §14) answered with 206
//! and `Content-Range`, 416 when it cannot be satisfied, the whole file otherwise, with an
//! `ETag` and `If-None-Match`. The body is read in chunks on a blocking thread and streamed;
//! the file is never held in memory whole. Used by `GET /v1/jobs/{id}/weights`.

use super::ApiError;
use axum::{
    body::{Body, Bytes},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use std::{
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
};
use tokio::sync::mpsc;

/// Bytes per body chunk.
const CHUNK: usize = 256 << 10;

/// What a `Range` header asks of a file of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file: no `Range`, or one this server ignores (not `bytes`, several ranges,
    /// malformed), as RFC 9110 allows.
    Whole,
    /// Bytes `start..=end` (inclusive, inside the file).
    Part {
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
    },
    /// A well-formed range that lies beyond the file (416).
    Unsatisfiable,
}

/// Reads `Range` for a file of `size` bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n` (the last
/// `n`); an end past the file is clipped to it.
pub fn parse_range(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Wanted::Whole;
            }
            if start >= size {
                return Wanted::Unsatisfiable;
            }
            Wanted::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }
        }
        _ => Wanted::Whole,
    }
}

/// Streams `len` bytes of `file` from `start` as a body, read on a blocking thread.
fn body(mut file: std::fs::File, start: u64, len: u64) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        let mut file = file.take(len);
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
            match file.read(&mut buf) {
                Ok(0) => {
                    // The file shrank under us: end the body short (the client sees it).
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file ended early",
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Answers a GET of the file at `path` (`size` bytes, content hash `sha256`) named
/// `filename`, honouring `Range` and `If-None-Match`.
pub async fn serve_file(
    request: &HeaderMap,
    path: PathBuf,
    size: u64,
    sha256: &str,
    filename: &str,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    let header_text = |name: header::HeaderName| request.get(name).and_then(|v| v.to_str().ok());
    let mut headers = HeaderMap::new();
    set(&mut headers, header::ETAG, &etag);
    set(&mut headers, header::ACCEPT_RANGES, "bytes");
    if header_text(header::IF_NONE_MATCH)
        .is_some_and(|m| m.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    // A range applies only to the version the client has (`If-Range` with our ETag).
    let range = header_text(header::RANGE)
        .filter(|_| header_text(header::IF_RANGE).is_none_or(|tag| tag.trim() == etag));
    let (status, start, len) = match parse_range(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => {
            set(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Wanted::Unsatisfiable => {
            set(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            let mut e = ApiError::invalid_param(
                "Range",
                format!(
                    "the range {} lies outside the file's {size} bytes",
                    range.unwrap_or("")
                ),
            );
            e.status = StatusCode::RANGE_NOT_SATISFIABLE;
            let mut response = e.into_response();
            response.headers_mut().extend(headers);
            return Ok(response);
        }
    };
    let file = std::fs::File::open(&path)
        .map_err(|e| ApiError::internal(format!("opening {}: {e}", path.display())))?;
    set(
        &mut headers,
        header::CONTENT_TYPE,
        "application/octet-stream",
    );
    set(&mut headers, header::CONTENT_LENGTH, &len.to_string());
    set(
        &mut headers,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{filename}\""),
    );
    Ok((status, headers, body(file, start, len)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges_are_read_and_clipped() {
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(parse_range(None, 100), Wanted::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 100), part(0, 0));
        assert_eq!(parse_range(Some("bytes=8-99"), 100), part(8, 99));
        assert_eq!(parse_range(Some("bytes=8-1000"), 100), part(8, 99));
        assert_eq!(parse_range(Some("bytes=90-"), 100), part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), part(0, 99));
        assert_eq!(parse_range(Some(" bytes= 3 - 4 "), 100), part(3, 4));
    }

    #[test]
    fn ranges_beyond_the_file_are_unsatisfiable() {
        assert_eq!(parse_range(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=100-200"), 100),
            Wanted::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn other_ranges_are_ignored_and_the_whole_file_is_sent() {
        for ignored in [
            "items=0-5",
            "bytes=5-2",
            "bytes=0-1,4-5",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=18446744073709551616-",
            "",
        ] {
            assert_eq!(parse_range(Some(ignored), 100), Wanted::Whole, "{ignored}");
        }
    }

    #[tokio::test]
    async fn a_range_streams_those_bytes_with_its_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let data: Vec<u8> = (0..=255u8).cycle().take(CHUNK * 2 + 17).collect();
        std::fs::write(&path, &data).unwrap();
        let size = data.len() as u64;
        let mut asked = HeaderMap::new();
        asked.insert(header::RANGE, HeaderValue::from_static("bytes=5-262200"));
        let response = serve_file(&asked, path.clone(), size, "ab", "w.bin")
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            response.headers()[header::CONTENT_RANGE],
            format!("bytes 5-262200/{size}")
        );
        assert_eq!(response.headers()[header::ETAG], "\"ab\"");
        let body = axum::body::to_bytes(response.into_body(), 1 << 30)
            .await
            .unwrap();
        assert_eq!(&body[..], &data[5..=262_200]);

        let whole = serve_file(&HeaderMap::new(), path.clone(), size, "ab", "w.bin")
            .await
            .unwrap();
        assert_eq!(whole.status(), StatusCode::OK);
        let body = axum::body::to_bytes(whole.into_body(), 1 << 30)
            .await
            .unwrap();
        assert_eq!(&body[..], &data[..]);

        asked.insert(header::RANGE, HeaderValue::from_static("bytes=999999-"));
        let refused = serve_file(&asked, path.clone(), size, "ab", "w.bin")
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            refused.headers()[header::CONTENT_RANGE],
            format!("bytes */{size}")
        );

        // A stale If-Range: the whole (current) file.
        asked.insert(header::RANGE, HeaderValue::from_static("bytes=0-9"));
        asked.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        let stale = serve_file(&asked, path.clone(), size, "ab", "w.bin")
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK);
        let mut cached = HeaderMap::new();
        cached.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"ab\""));
        let same = serve_file(&cached, path, size, "ab", "w.bin")
            .await
            .unwrap();
        assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    }
}
