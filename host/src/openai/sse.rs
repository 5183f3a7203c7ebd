//! Streaming answers as OpenAI sends them: `data: {json}` events, keep-alive comments,
//! `X-Accel-Buffering: no`, an error event if generation fails after the stream started, and
//! `data: [DONE]` last. The body reads the model worker's channel directly; a client that
//! disconnects drops the body, which cancels generation.

use super::{
    generation::{finish_reason, Generation, Piece},
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

/// Where a stream is.
enum Phase {
    /// Sending the start event of choice `.0`.
    Starting(usize),
    /// Relaying pieces.
    Running,
    /// Every choice ended: the usage chunk, if asked for.
    Usage,
    /// Sending `[DONE]` (after the usage, or after a failure).
    Done,
    /// `[DONE]` was sent.
    Over,
}

/// A response body's state: the generation read directly, with what the ending needs.
struct Body<R> {
    generation: Generation,
    render: R,
    phase: Phase,
    choices: usize,
    per_prompt: usize,
    include_usage: bool,
    finished: usize,
    prompt_tokens: u32,
    completion_tokens: u32,
    cached_tokens: u32,
}

impl<R: Fn(Event) -> Option<Value>> Body<R> {
    /// The next event to send; None after `[DONE]`.
    async fn next(&mut self) -> Option<SseEvent> {
        let data = |value: Value| Some(SseEvent::default().data(value.to_string()));
        loop {
            match self.phase {
                Phase::Starting(i) if i < self.choices => {
                    self.phase = Phase::Starting(i + 1);
                    if let Some(v) = (self.render)(Event::Start(i)) {
                        return data(v);
                    }
                }
                Phase::Starting(_) => self.phase = Phase::Running,
                Phase::Running if self.finished == self.choices => self.phase = Phase::Usage,
                Phase::Running => match self.generation.next().await {
                    Some(Piece::Text(i, text)) => {
                        if let Some(v) = (self.render)(Event::Text(i, text)) {
                            return data(v);
                        }
                    }
                    Some(Piece::Done(i, Ok(output))) => {
                        self.finished += 1;
                        if i % self.per_prompt.max(1) == 0 {
                            self.prompt_tokens += output.prompt_tokens;
                            self.cached_tokens += output.cached_tokens;
                        }
                        self.completion_tokens += output.completion_tokens;
                        if let Some(v) = (self.render)(Event::Finish(i, finish_reason(&output))) {
                            return data(v);
                        }
                    }
                    Some(Piece::Done(_, Err(e))) => {
                        self.phase = Phase::Done;
                        return data(e.body());
                    }
                    None => self.phase = Phase::Done,
                },
                Phase::Usage => {
                    self.phase = Phase::Done;
                    if self.include_usage {
                        let usage = Usage::new(
                            self.prompt_tokens,
                            self.completion_tokens,
                            self.cached_tokens,
                        );
                        if let Some(v) = (self.render)(Event::Usage(usage)) {
                            return data(v);
                        }
                    }
                }
                Phase::Done => {
                    self.phase = Phase::Over;
                    return Some(SseEvent::default().data("[DONE]"));
                }
                Phase::Over => return None,
            }
        }
    }
}

/// Streams the pieces of `choices` generations, `per_prompt` of them per prompt (their
/// prompt tokens are counted once); `render` turns each event into a chunk (or nothing).
/// The response body reads the generation itself: no task or channel in between, and a
/// client that disconnects drops the body, which cancels the generation.
pub fn stream(
    generation: Generation,
    choices: usize,
    per_prompt: usize,
    include_usage: bool,
    render: impl Fn(Event) -> Option<Value> + Send + 'static,
) -> Response {
    let body = Body {
        generation,
        render,
        phase: Phase::Starting(0),
        choices,
        per_prompt,
        include_usage,
        finished: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
    };
    let events = futures_util::stream::unfold(body, |mut body| async move {
        let event = body.next().await?;
        Some((Ok::<_, Infallible>(event), body))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
