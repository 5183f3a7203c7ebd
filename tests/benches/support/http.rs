//! A minimal HTTP/1.1 client for the benches: one request on a kept-alive connection
//! (`exchange`), and reading a response body line by line as it streams (`body_lines`, for
//! server-sent events). Plain `std::net`, so the client costs the same against every server.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
};

/// Reads a chunked body's next chunk (without its CRLF); `None` at the last (empty) chunk.
fn next_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).expect("chunk size");
    let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
        .expect("chunk size");
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).expect("chunk");
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// Reads a response head: the status and whether the body is chunked (else its length).
fn head(reader: &mut impl BufRead) -> (u16, bool, usize) {
    let (mut status, mut chunked, mut length) = (0, false, 0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read head");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(code) = line.strip_prefix("HTTP/1.1 ") {
            status = code[..3].parse().expect("status");
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("length");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked |= value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    (status, chunked, length)
}

/// Sends one request on a keep-alive connection and reads its whole answer (Content-Length
/// framed or chunked); returns the status and body.
pub fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> (u16, Vec<u8>) {
    stream.get_mut().write_all(request).expect("write");
    let (status, chunked, length) = head(stream);
    if chunked {
        let mut body = Vec::new();
        while let Some(chunk) = next_chunk(stream) {
            body.extend_from_slice(&chunk);
        }
        let mut trailer = String::new();
        stream.read_line(&mut trailer).expect("trailer");
        return (status, body);
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("read body");
    (status, body)
}

/// A `POST path` request with a JSON body, kept alive (`close: false`) or not.
pub fn post_request(path: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads an HTTP/1.1 response body, chunked or not, handing each complete line to `line`
/// as soon as it arrives.
pub fn body_lines(stream: TcpStream, mut line: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let (_, chunked, _) = head(&mut reader);
    if !chunked {
        for l in reader.lines() {
            line(&l.expect("line"));
        }
        return;
    }
    let mut pending = Vec::new();
    let mut flush = |pending: &mut Vec<u8>| {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let text: Vec<u8> = pending.drain(..=end).collect();
            line(String::from_utf8_lossy(&text).trim_end());
        }
    };
    while let Some(chunk) = next_chunk(&mut reader) {
        pending.extend_from_slice(&chunk);
        flush(&mut pending);
    }
    pending.push(b'\n');
    flush(&mut pending);
}
