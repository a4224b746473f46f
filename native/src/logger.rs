//! The `log` crate's records into Envoy's log (the `dynamic_modules` logger), from any thread.

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::abi::{self, ModuleBuffer};

struct EnvoyLogger;

fn envoy_level(level: Level) -> abi::LogLevel {
    match level {
        Level::Error => abi::LOG_ERROR,
        Level::Warn => abi::LOG_WARN,
        Level::Info => abi::LOG_INFO,
        Level::Debug => abi::LOG_DEBUG,
        Level::Trace => abi::LOG_TRACE,
    }
}

impl Log for EnvoyLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // SAFETY: a plain query, any thread.
        unsafe { abi::envoy_dynamic_module_callback_log_enabled(envoy_level(metadata.level())) }
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        // SAFETY: the message outlives the call; any thread.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                envoy_level(record.level()),
                ModuleBuffer::of(message.as_bytes()),
            )
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Installs the logger (once per process; a second call changes nothing). Debug records stop
/// at the `log` crate, as in the Wasm build: a request's `debug!` then costs a comparison, not
/// a call into Envoy to ask whether its level is on.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// A last word before a panic aborts Envoy (`panic = "abort"`: unwinding into Envoy's C++ would
/// be undefined behaviour). The crate's rules forbid panics on every path; this says where one
/// was, should it happen.
pub fn say_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("keygate (native) panicked, Envoy will abort: {info}");
        // SAFETY: as `log`.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                abi::LOG_CRITICAL,
                ModuleBuffer::of(message.as_bytes()),
            )
        }
    }));
}
