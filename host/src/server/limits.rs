//! Connection-level limits of the HTTP server, from `[api]`: a deadline for each request's
//! headers (hyper's header read timeout, which also ends idle keep-alive connections), a
//! deadline for its body, a cap on the connections served at once (further ones wait in the
//! listen backlog), and a graceful shutdown that drops what is still open after a grace
//! period. Only reading the request is bounded: responses, SSE streams included, run as long
//! as they need. Routes and middleware are left to the parent module.

use crate::{config::ApiSection, openai::ApiError};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    serve::Listener,
    Router,
};
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    sync::{watch, Semaphore},
    task::JoinSet,
};

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, counted from its headers.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long open connections may finish when the server stops.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits `[api]` configures.
    pub fn from_api(api: &ApiSection) -> Self {
        Self {
            header_timeout: Duration::from_secs(api.header_timeout_seconds),
            body_timeout: Duration::from_secs(api.body_timeout_seconds),
            max_connections: api.max_connections.max(1),
            shutdown_grace: Duration::from_secs(api.shutdown_grace_seconds),
        }
    }
}

/// Serves HTTP/1.1 with `app` on every connection `listener` yields until `shutdown`
/// completes; then stops accepting, lets open connections finish their current request for
/// up to the shutdown grace, and drops the rest.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // A slot first, then the connection: beyond the cap, clients wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(http.serve_connection(TokioIo::new(io), service));
            let stop = async {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = stop => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(?peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            grace_seconds = limits.shutdown_grace.as_secs(),
            "dropping HTTP connections still open after the shutdown grace"
        );
        connections.shutdown().await;
    }
}

/// Middleware bounding how long reading a request body may take ([`Limits::body_timeout`]).
/// A body that is late fails its reader, and the answer becomes a 408 that closes the
/// connection. The response is not bounded.
pub async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: expired.clone(),
            limit,
        })
    });
    let response = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    let mut e = ApiError::invalid(format!(
        "the request body did not arrive within {} s ([api] body_timeout_seconds)",
        limit.as_secs()
    ));
    e.status = StatusCode::REQUEST_TIMEOUT;
    let mut response = e.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body read failed: its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
struct BodyTimedOut(Duration);

/// A request body that fails once its deadline has passed.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
    limit: Duration,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use axum::{
        middleware,
        routing::{get, post},
    };
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpStream},
        time::Instant,
    };

    /// A server on its own runtime thread; `stop` shuts it down and waits for it.
    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        done: std::sync::mpsc::Receiver<()>,
    }

    impl Server {
        fn start(limits: Limits) -> Self {
            let app = Router::new()
                .route("/", get(|| async { "hello" }))
                .route(
                    "/echo",
                    post(|body: Bytes| async move { body.len().to_string() }),
                )
                .route("/slow", get(slow_stream).post(slow_stream))
                .layer(middleware::from_fn_with_state(
                    limits.body_timeout,
                    body_deadline,
                ));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (done_tx, done) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                runtime.block_on(serve(listener, app, limits, async {
                    let _ = stopped.await;
                }));
                let _ = done_tx.send(());
            });
            Self {
                addr,
                stop: Some(stop),
                done,
            }
        }

        /// Signals shutdown; returns how long serving took to finish.
        fn stop(&mut self) -> Duration {
            let started = Instant::now();
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            self.done
                .recv_timeout(Duration::from_secs(30))
                .expect("the server stops");
            started.elapsed()
        }

        fn connect(&self) -> TcpStream {
            let stream = TcpStream::connect(self.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        }

        /// A whole GET on a fresh connection.
        fn get(&self, path: &str) -> String {
            let mut stream = self.connect();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            read_all(&mut stream)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Five chunks 400 ms apart: a response that outlives one-second request deadlines.
    async fn slow_stream() -> Body {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            if i == 5 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            Some((Ok::<_, std::io::Error>(format!("data: {i}\n\n")), i + 1))
        });
        Body::from_stream(chunks)
    }

    fn read_all(stream: &mut TcpStream) -> String {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn limits(header: u64, body: u64, max_connections: usize, grace: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(header),
            body_timeout: Duration::from_secs(body),
            max_connections,
            shutdown_grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn half_a_header_is_cut_off_after_the_header_timeout() {
        let server = Server::start(limits(1, 30, 16, 1));
        let mut slow = server.connect();
        let started = Instant::now();
        write!(slow, "GET / HTTP/1.1\r\nHost: local").unwrap();
        let answer = read_all(&mut slow);
        let waited = started.elapsed();
        assert_eq!(answer, "", "nothing is answered to half a header");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
        // An idle keep-alive connection is closed by the same deadline.
        let mut idle = server.connect();
        write!(idle, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let started = Instant::now();
        let answer = read_all(&mut idle);
        assert!(answer.ends_with("hello"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // And the server is healthy.
        assert!(server.get("/").ends_with("hello"));
    }

    #[test]
    fn a_trickled_body_gets_408_and_a_closed_connection() {
        let server = Server::start(limits(30, 1, 16, 1));
        let mut slow = server.connect();
        let started = Instant::now();
        write!(
            slow,
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"a\":"
        )
        .unwrap();
        // Keep trickling: each byte arrives in time, the whole body does not.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            let _ = slow.write_all(b" ");
        }
        let answer = read_all(&mut slow);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout_seconds"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A body sent in time is read.
        let mut ok = server.connect();
        write!(
            ok,
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello"
        )
        .unwrap();
        let answer = read_all(&mut ok);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with('5'),
            "{answer}"
        );
    }

    #[test]
    fn streamed_responses_outlive_the_request_deadlines() {
        let server = Server::start(limits(1, 1, 16, 1));
        let answer = server.get("/slow");
        assert!(answer.contains("data: 4"), "{answer}");
        // With a request body too: the body deadline ends when the body is read.
        let mut stream = server.connect();
        write!(
            stream,
            "POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n{{}}"
        )
        .unwrap();
        let answer = read_all(&mut stream);
        assert!(answer.contains("data: 4"), "{answer}");
    }

    #[test]
    fn connections_beyond_the_cap_wait_until_one_closes() {
        let server = Server::start(limits(30, 30, 2, 1));
        let first = server.connect();
        let _second = server.connect();
        std::thread::sleep(Duration::from_millis(200));
        let mut third = server.connect();
        third
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        write!(
            third,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let waiting = third.read(&mut buf);
        assert!(
            waiting.is_err(),
            "served beyond the cap: {:?}",
            waiting.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        );
        // A slot frees up: the waiting client is served.
        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let answer = read_all(&mut third);
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[test]
    fn shutdown_ends_within_the_grace_despite_a_slow_client() {
        let mut server = Server::start(limits(60, 60, 16, 1));
        let mut slow = server.connect();
        write!(slow, "GET / HTTP/1.1\r\nHost: loc").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let took = server.stop();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(read_all(&mut slow), "", "the slow client was dropped");
    }

    #[test]
    fn shutdown_lets_a_running_response_finish_within_the_grace() {
        let mut server = Server::start(limits(10, 10, 16, 10));
        let mut stream = server.connect();
        write!(stream, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut first = [0u8; 16];
        let _ = stream.read(&mut first).unwrap();
        let took = server.stop();
        assert!(took < Duration::from_secs(5), "{took:?}");
        let rest = read_all(&mut stream);
        assert!(rest.contains("data: 4"), "{rest}");
    }

    #[test]
    fn the_limits_are_validated() {
        let valid = Config::default();
        assert!(valid.validate().is_ok());
        assert_eq!(
            Limits::from_api(&valid.api),
            limits(10, 30, 2048, 10),
            "defaults"
        );
        let mut bad = Config::default();
        bad.api.header_timeout_seconds = 0;
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("api.header_timeout_seconds") && e.contains("got 0"),
            "{e}"
        );
        let mut bad = Config::default();
        bad.api.max_connections = 0;
        assert!(bad.validate().is_err());
        let mut bad = Config::default();
        bad.api.body_timeout_seconds = 100_000;
        assert!(bad.validate().is_err());
        let mut bad = Config::default();
        bad.api.allowed_hosts = vec!["http://x/".into()];
        assert!(bad.validate().is_err());
    }
}
