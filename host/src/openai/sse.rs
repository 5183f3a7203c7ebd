//! Streaming answers as OpenAI sends them: `data: {json}` events, keep-alive comments,
//! `X-Accel-Buffering: no`, an error event if generation fails after the stream started, and
//! `data: [DONE]` last. A client that disconnects drops the stream, which cancels generation.

use super::{
    generation::{finish_reason, Piece},
    types::Usage,
};
use axum::{
    http::{header, HeaderValue},
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use serde_json::Value;
use std::{convert::Infallible, time::Duration};
use tokio::sync::mpsc;

/// What the endpoint renders into a chunk.
#[derive(Debug)]
pub enum Event {
    /// Choice `i` starts (chat sends the assistant role here).
    Start(usize),
    /// Text of choice `i`.
    Text(usize, String),
    /// Choice `i` finished for this reason.
    Finish(usize, &'static str),
    /// All choices finished; the token counts (only when asked for).
    Usage(Usage),
}

/// Streams the pieces of `choices` generations, `per_prompt` of them per prompt (their
/// prompt tokens are counted once); `render` turns each event into a chunk (or nothing).
pub fn stream(
    mut rx: mpsc::UnboundedReceiver<Piece>,
    choices: usize,
    per_prompt: usize,
    include_usage: bool,
    render: impl Fn(Event) -> Option<Value> + Send + 'static,
) -> Response {
    let (out, events) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let send = |value: Value| {
            let out = out.clone();
            async move {
                out.send(Ok(SseEvent::default().data(value.to_string())))
                    .await
                    .is_ok()
            }
        };
        for i in 0..choices {
            if let Some(v) = render(Event::Start(i)) {
                if !send(v).await {
                    return;
                }
            }
        }
        let mut finished = 0;
        let mut prompt_tokens = 0;
        let mut completion_tokens = 0;
        while finished < choices {
            let Some(piece) = rx.recv().await else {
                break;
            };
            let chunk = match piece {
                Piece::Text(i, text) => render(Event::Text(i, text)),
                Piece::Done(i, Ok(output)) => {
                    finished += 1;
                    if i % per_prompt.max(1) == 0 {
                        prompt_tokens += output.prompt_tokens;
                    }
                    completion_tokens += output.completion_tokens;
                    render(Event::Finish(i, finish_reason(&output)))
                }
                Piece::Done(_, Err(e)) => {
                    let _ = send(e.body()).await;
                    break;
                }
            };
            if let Some(v) = chunk {
                if !send(v).await {
                    return;
                }
            }
        }
        if include_usage && finished == choices {
            let usage = Usage::new(prompt_tokens, completion_tokens);
            if let Some(v) = render(Event::Usage(usage)) {
                if !send(v).await {
                    return;
                }
            }
        }
        let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|e| (e, events))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
