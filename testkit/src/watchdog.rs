//! Running one plugin call (or one whole check) on its own thread with a deadline, so a
//! plugin that never returns is reported instead of hanging the test suite.

use std::{sync::mpsc, time::Duration};

/// Runs `f` on a fresh thread and waits at most `limit` for it. A call that does not return
/// in time is reported and its thread left behind: it cannot be stopped from outside (the
/// process ends it on exit), which is why the kit stops calling a model after a hang.
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cyxwiz-testkit-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a calling thread: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not return within {} s: the plugin hangs (or the model needs a longer \
             Conformance::timeout)",
            limit.as_secs_f64()
        )),
        // The thread ended without sending: the host-side code around the call panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err("the calling thread panicked outside the plugin".into())
        }
    }
}

/// Whether a failure message came from [`within`]'s deadline.
pub(crate) fn is_timeout(message: &str) -> bool {
    message.contains("did not return within")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn returns_the_value_in_time() {
        assert_eq!(within(Duration::from_secs(5), || 7), Ok(7));
    }

    #[test]
    fn a_call_that_never_returns_is_reported_at_the_deadline() {
        let started = Instant::now();
        let err = within(Duration::from_millis(200), || loop {
            std::thread::park();
        })
        .unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(err.contains("0.2 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_panicking_caller_is_an_error_not_a_panic() {
        let err = within(Duration::from_secs(5), || -> u32 { panic!("boom") }).unwrap_err();
        assert!(err.contains("panicked"), "{err}");
    }
}
