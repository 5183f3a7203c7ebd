//! llama.cpp's and ggml's log callback, forwarded into `tracing` (and so into the node's log,
//! tagged with this plugin). Their INFO chatter (tens of lines per model load) is demoted to
//! DEBUG; warnings and errors stay as they are. Continuation pieces (`CONT`) are logged at
//! DEBUG with the text they carry.
//!
//! Not llama-cpp-2's own `send_logs_to_tracing`: its `LogOptions` can only switch logging on
//! or off, and it emits llama.cpp's INFO lines at tracing's INFO from fixed callsites, so the
//! demotion cannot be had through it (a target filter would hide them at DEBUG too).

use std::{
    ffi::{c_char, c_void, CStr},
    sync::Once,
};

unsafe extern "C" fn forward(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", "{text}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama.cpp", "{text}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO | llama_cpp_sys_2::GGML_LOG_LEVEL_CONT => {
            tracing::debug!(target: "llama.cpp", "{text}")
        }
        _ => tracing::trace!(target: "llama.cpp", "{text}"),
    }
}

/// Installs the callback for llama.cpp and ggml, once per process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `forward` is a valid callback for the life of the process and ignores the
        // user data pointer.
        unsafe {
            llama_cpp_sys_2::llama_log_set(Some(forward), std::ptr::null_mut());
            llama_cpp_sys_2::ggml_log_set(Some(forward), std::ptr::null_mut());
        }
    });
}
