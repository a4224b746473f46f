//! One filter configuration of the native build (Envoy's `filter_config`): the parsed plugin
//! configuration, the process-memory store it serves from, its stats, its background thread,
//! and each Envoy worker thread's `Worker` (what the Wasm build keeps per VM).

use std::cell::RefCell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use keygate::config::Config;
use keygate::metrics::Metrics;
use keygate::request::Worker;

use crate::background::BackgroundThread;
use crate::shared::Store;
use crate::stats::Stats;

pub struct Module {
    /// Unique per configuration, so a worker thread tells its workers of several apart.
    id: u64,
    pub config: Config,
    /// The key store, counters, leases and queues, shared with the configurations of the same
    /// `filter_name` and sync settings (`store_key`).
    pub store: Arc<Store>,
    pub stats: Arc<dyn Stats>,
    /// `None` only while the configuration is made; dropped (stopped) with the module.
    background: Mutex<Option<BackgroundThread>>,
}

static NEXT_MODULE_ID: AtomicU64 = AtomicU64::new(1);

/// A worker thread's `Worker` of one configuration: the configuration's id, the configuration
/// (weakly: Envoy decides when it goes), the worker.
type ThreadWorker = (u64, std::sync::Weak<Module>, Rc<Worker>);

thread_local! {
    /// This worker thread's `Worker` of each live configuration.
    static WORKERS: RefCell<Vec<ThreadWorker>> = const { RefCell::new(Vec::new()) };
}

/// The stores of live configurations, by `store_key`.
static STORES: Mutex<Vec<(String, Weak<Store>)>> = Mutex::new(Vec::new());

/// Which configurations share a store: those of one `filter_name` that sync it the same way
/// (control service, credential, rate-limit layout). Two that differ there would overwrite
/// each other's snapshot, credential and counters; they get a store each. Only a hash of those
/// settings is kept (they hold the sync token).
fn store_key(name: &str, config: &Config) -> String {
    let mut hasher = DefaultHasher::new();
    format!("{:?}{:?}", config.control, config.rate_limits).hash(&mut hasher);
    format!("{name}#{:016x}", hasher.finish())
}

/// The store of the configurations of `key`: the one a live configuration holds, or a new
/// one. Stores no configuration holds any more are forgotten here.
fn shared_store(key: &str) -> Arc<Store> {
    let mut stores = STORES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores.retain(|(_, store)| store.strong_count() > 0);
    if let Some(store) = stores
        .iter()
        .find(|(held, _)| held == key)
        .and_then(|(_, store)| store.upgrade())
    {
        return store;
    }
    let store = Arc::new(Store::default());
    stores.push((key.to_string(), Arc::downgrade(&store)));
    store
}

/// Why a configuration was refused, for Envoy's log.
#[derive(Debug)]
pub enum ModuleError {
    Config(keygate::config::ConfigError),
    /// The native build calls the control service itself.
    NoUrl,
    /// `control.ca_file` cannot be used.
    CaFile(String),
    Thread(std::io::Error),
}

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleError::Config(err) => write!(f, "invalid plugin configuration: {err}"),
            ModuleError::NoUrl => write!(
                f,
                "invalid plugin configuration: control.url: the native build calls the control service itself and needs its URL (http://host:port)"
            ),
            ModuleError::CaFile(err) => {
                write!(f, "invalid plugin configuration: control.ca_file: {err}")
            }
            ModuleError::Thread(err) => write!(f, "could not start the background thread: {err}"),
        }
    }
}

impl Module {
    /// Parses `bytes` (strictly, as the Wasm build does), defines every metric in `stats` (Envoy
    /// allows it only now) and starts the background thread. Configurations with the same
    /// `store_name` (the filter's `filter_name`) and sync settings share one store
    /// (`store_key`), as Wasm filters with one `vm_id` share Envoy's shared data: a listener
    /// update's new configuration serves the keys at once, and rate limits count once per
    /// Envoy, not once per listener.
    /// Without `run`, nothing is started (`envoy --mode validate`).
    pub fn start(
        store_name: &str,
        bytes: &[u8],
        stats: Arc<dyn Stats>,
        run: bool,
    ) -> Result<Arc<Module>, ModuleError> {
        let config =
            Config::parse(bytes, &|name| std::env::var(name).ok()).map_err(ModuleError::Config)?;
        if config.control.urls.is_empty() {
            return Err(ModuleError::NoUrl);
        }
        let tls = match &config.control.ca_file {
            Some(path) => Some(
                keygate_trust::trusting(std::path::Path::new(path))
                    .map_err(|problem| ModuleError::CaFile(format!("{path}: {problem}")))?,
            ),
            None => None,
        };
        // Defined now, found by name later by every worker and the background thread.
        let _ = Metrics::define_with(|kind, name| stats.define(kind, name));
        stats.freeze();
        let module = Arc::new(Module {
            id: NEXT_MODULE_ID.fetch_add(1, Ordering::Relaxed),
            config: config.clone(),
            store: shared_store(&store_key(store_name, &config)),
            stats: Arc::clone(&stats),
            background: Mutex::new(None),
        });
        if !run {
            return Ok(module);
        }
        let thread = BackgroundThread::start(config, tls, Arc::clone(&module.store), stats)
            .map_err(ModuleError::Thread)?;
        *module
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(thread);
        Ok(module)
    }

    /// This worker thread's `Worker` of the configuration `module`, made (and its gathered work
    /// handed to the background thread) on the thread's first request.
    ///
    /// # Safety
    /// `module` is a configuration `start` made and Envoy still holds (the `Arc` given to
    /// Envoy as a raw pointer in `on_http_filter_config_new`).
    pub unsafe fn worker(module: &Module) -> Rc<Worker> {
        WORKERS.with(|workers| {
            let mut workers = workers.borrow_mut();
            if let Some((_, _, worker)) = workers.iter().find(|(id, _, _)| *id == module.id) {
                return Rc::clone(worker);
            }
            // SAFETY: `module` lives in an `Arc` Envoy holds a count of (see above): take one
            // more count for the `Arc` made here, which its drop gives back.
            let module = {
                Arc::increment_strong_count(module as *const Module);
                Arc::from_raw(module as *const Module)
            };
            let this = &module;
            // Workers of configurations Envoy has since destroyed go with the next new one.
            workers.retain(|(_, module, _)| module.strong_count() > 0);
            let metrics = Metrics::define_with(|kind, name| this.stats.define(kind, name));
            let worker = Rc::new(Worker::new(this.config.clone(), metrics));
            if let Some(background) = this
                .background
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
            {
                background.gather_from(Arc::clone(&worker.gathered));
            }
            workers.push((this.id, Arc::downgrade(this), Rc::clone(&worker)));
            worker
        })
    }

    /// Stops the background thread (the configuration is gone; requests in flight still finish
    /// on their workers).
    pub fn stop(&self) {
        let thread = self
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(thread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_of_one_key_share_a_store_while_one_holds_it() {
        let first = shared_store("module-tests-a");
        let again = shared_store("module-tests-a");
        let other = shared_store("module-tests-b");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        drop((first, again));
        let fresh = shared_store("module-tests-a");
        fresh.data.set("k", b"v", None).unwrap();
        let held = shared_store("module-tests-a");
        assert_eq!(held.data.get("k").0.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_store_is_shared_by_name_and_sync_settings() {
        let config = |url: &str| {
            let text = format!(r#"{{"control":{{"cluster":"c","token":"t","url":"{url}"}}}}"#);
            Config::parse(text.as_bytes(), &|_| None).unwrap()
        };
        let (a, b) = (config("http://a:1"), config("http://b:1"));
        assert_eq!(store_key("keygate", &a), store_key("keygate", &a.clone()));
        assert_ne!(store_key("keygate", &a), store_key("keygate", &b));
        assert_ne!(store_key("keygate", &a), store_key("other", &a));
        assert!(
            !store_key("keygate", &a).contains("http"),
            "only a hash of the settings"
        );
    }
}
