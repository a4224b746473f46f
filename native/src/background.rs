//! The native build's background thread: one per filter configuration, running the same
//! `keygate::background::Background` (snapshot refresh, usage reports, fleet sync, enrollment)
//! as a Wasm worker VM's root context does, over a `Host` made of this process's shared data,
//! Envoy's stats and our own HTTP client. It never runs on an Envoy thread, so nothing it does
//! (a long poll, decoding a 100,000-key snapshot) holds a request.
//!
//! Every Envoy worker thread's requests gather usage and touched rate-limit slots in their
//! `Gathered`, which the thread is handed when the worker's first request comes
//! (`Message::Gather`) and drains on every tick.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keygate::background::{self as jobs, Background, Queues};
use keygate::config::Config;
use keygate::gathered::Gathered;
use keygate::headers::Headers;
use keygate::host::{DispatchError, Host, MetricKind, WriteError};
use keygate::metrics::Metrics;
use keygate::request::Worker;
use keygate::sync::queue::Queue;
use log::{error, info};

use crate::client::{self, Answer};
use crate::shared::{SharedData, Store};
use crate::stats::Stats;

/// What the thread is told.
pub enum Message {
    /// The answer to a call it started, to the URL of that index.
    Answer(Answer, usize),
    /// A worker thread's gathered work, to drain on every tick.
    Gather(Arc<Gathered>),
    /// Its configuration is gone: stop.
    Stop,
}

/// The first tick comes this soon after start, so the first snapshot is fetched at once (as
/// the Wasm build's `FIRST_TICK`).
const FIRST_TICK: Duration = Duration::from_millis(10);

/// The running thread; dropping it stops the thread and waits for it. The wait is short: the
/// thread never waits on a call (calls run on their own threads, their answers dropped once it
/// is gone), and it stops before the next message it would handle, whatever is queued; only
/// what it is doing then (a snapshot page being written, at most) finishes first. It must
/// finish: the thread counts into the stats of Envoy's configuration, which Envoy frees next.
pub struct BackgroundThread {
    messages: Sender<Message>,
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl BackgroundThread {
    /// Calls go to `config.control.urls`; `tls`: what `https://` URLs are trusted by
    /// (`None`: the public web roots).
    pub fn start(
        config: Config,
        tls: Option<Arc<rustls::ClientConfig>>,
        store: Arc<Store>,
        stats: Arc<dyn Stats>,
    ) -> std::io::Result<BackgroundThread> {
        let (messages, inbox) = mpsc::channel();
        let answers = messages.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let handle = std::thread::Builder::new()
            .name("keygate-background".to_string())
            .spawn(move || run(config, agent(tls), store, stats, inbox, answers, &stop))?;
        Ok(BackgroundThread {
            messages,
            stopping,
            handle: Some(handle),
        })
    }

    /// Hands the thread a worker's gathered work.
    pub fn gather_from(&self, gathered: Arc<Gathered>) {
        let _ = self.messages.send(Message::Gather(gathered));
    }
}

impl Drop for BackgroundThread {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.messages.send(Message::Stop);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Random identity of this background for the leases: the backgrounds of configurations that
/// share a store take turns by them, as a Wasm build's worker VMs do.
fn random_id() -> u64 {
    RandomState::new().hash_one(0x5EED_u64) | 1
}

/// The thread's HTTP client: no redirects (Envoy's `httpCall`, which the Wasm build uses,
/// follows none either), trusting `tls` for `https://` when given.
fn agent(tls: Option<Arc<rustls::ClientConfig>>) -> ureq::Agent {
    let mut agent = ureq::AgentBuilder::new().redirects(0);
    if let Some(tls) = tls {
        agent = agent.tls_config(tls);
    }
    agent.build()
}

fn run(
    config: Config,
    agent: ureq::Agent,
    store: Arc<Store>,
    stats: Arc<dyn Stats>,
    inbox: Receiver<Message>,
    answers: Sender<Message>,
    stopping: &AtomicBool,
) {
    let base_urls = config.control.urls.clone();
    let host = BackgroundHost {
        shared: &store.data,
        stats: stats.as_ref(),
        base_urls: &base_urls,
        current: Cell::new(0),
        agent,
        answers,
        next_token: Cell::new(0),
        answer: RefCell::new(None),
    };
    let tick = jobs::tick_period(&config);
    // The store's queues: whichever configuration of the store holds a job's lease posts
    // what every configuration's workers handed over.
    let queues = Queues {
        usage: config
            .usage
            .enabled
            .then(|| Box::new(Arc::clone(&store.usage)) as Box<dyn Queue>),
        fleet: config
            .rate_limits
            .fleet
            .then(|| Box::new(Arc::clone(&store.fleet)) as Box<dyn Queue>),
    };
    info!(
        "keygate (native) background started: control {base_urls:?}, tick {tick:?}, fail mode {:?}",
        config.fail_mode
    );
    let worker = Rc::new(Worker::new(config, Metrics::define(&host)));
    let mut background = Background::new(0, random_id(), worker, queues);
    background.publish_store_gauges(&host);
    let mut next_tick = Instant::now() + FIRST_TICK;
    while !stopping.load(Ordering::SeqCst) {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(wait) {
            Ok(Message::Answer(answer, url_index)) => {
                host.note_answer(url_index, answer.status.is_some());
                let (token, size) = (answer.token, answer.body.len());
                *host.answer.borrow_mut() = Some(answer);
                background.on_http_call_response(&host, token, size);
                *host.answer.borrow_mut() = None;
            }
            Ok(Message::Gather(gathered)) => background.gather_from(gathered),
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                background.on_tick(&host);
                next_tick = Instant::now() + tick;
            }
        }
    }
    info!("keygate (native) background stopped");
}

/// The `Host` of the background thread.
struct BackgroundHost<'a> {
    shared: &'a SharedData,
    stats: &'a dyn Stats,
    /// The control service's replicas, and the index of the one calls go to.
    base_urls: &'a [String],
    current: Cell<usize>,
    agent: ureq::Agent,
    answers: Sender<Message>,
    next_token: Cell<u32>,
    /// The answer being delivered (`http_call_status` / `http_call_body` read it).
    answer: RefCell<Option<Answer>>,
}

impl BackgroundHost<'_> {
    /// A call to replica `url_index` ended without an answer (refused, reset, timed out): the
    /// next calls go to the next replica, as Envoy's outlier detection on the Wasm build's
    /// cluster ejects one that fails to connect. An HTTP answer, even a 503, keeps the replica:
    /// its database being down is not its own fault.
    fn note_answer(&self, url_index: usize, answered: bool) {
        let current = self.current.get();
        let next = replica_after(current, url_index, answered, self.base_urls.len());
        if next != current {
            info!(
                "keygate (native): no answer from {}, calling {} from now on",
                self.base_urls[current], self.base_urls[next]
            );
            self.current.set(next);
        }
    }
}

/// The replica calls go to after a call to `called` (of `count`) ended, `answered` or not,
/// while they went to `current`: the next one only when the current one gave no answer (an
/// answer to a call made before an earlier move changes nothing).
fn replica_after(current: usize, called: usize, answered: bool, count: usize) -> usize {
    if answered || called != current || count == 0 {
        return current;
    }
    (current + 1) % count
}

impl Host for BackgroundHost<'_> {
    fn now_ms(&self) -> u64 {
        crate::clock::now_ms()
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.shared.set(key, value, cas)
    }

    // No request on this thread: what only a request has reads as absent and writes nowhere.
    fn request_headers(&self) -> Headers {
        Headers::default()
    }
    fn set_request_header(&self, _name: &str, _value: Option<&str>) {}
    fn add_request_header(&self, _name: &str, _value: &str) {}
    fn set_response_header(&self, _name: &str, _value: &str) {}
    fn response_status(&self) -> Option<u32> {
        None
    }
    /// Envoy's node id is not readable from a dynamic module's configuration: enrollment uses
    /// `control.proxy_name`, else a made-up name (as a Wasm VM does when the id is invalid).
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn write_property(&self, _path: &[&str], _value: &[u8]) {}
    fn send_reply(&self, _: u32, _: &[(&str, &str)], _: &[u8], _: Option<i32>) {}

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        self.stats.define(kind, name)
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        self.stats.increment(id, delta)
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.stats.set(id, value)
    }

    fn start_http_call(
        &self,
        _cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        let url_index = self.current.get();
        let base_url = self
            .base_urls
            .get(url_index)
            .ok_or(DispatchError::InternalFailure)?;
        let call =
            client::call_of(base_url, headers, body, timeout).ok_or(DispatchError::BadArgument)?;
        let token = self.next_token.get().wrapping_add(1).max(1);
        self.next_token.set(token);
        let (agent, answers) = (self.agent.clone(), self.answers.clone());
        std::thread::Builder::new()
            .name("keygate-call".to_string())
            .spawn(move || {
                let answer = client::perform(&agent, token, call);
                // The background thread is gone when its configuration was: nobody to tell.
                let _ = answers.send(Message::Answer(answer, url_index));
            })
            .map_err(|err| {
                error!("keygate (native): could not start a call thread: {err}");
                DispatchError::InternalFailure
            })?;
        Ok(token)
    }

    fn http_call_status(&self) -> Option<u32> {
        self.answer.borrow().as_ref()?.status
    }

    fn http_call_body(&self, size: usize) -> Option<Vec<u8>> {
        let answer = self.answer.borrow();
        let body = &answer.as_ref()?.body;
        body.get(..size).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::replica_after;

    #[test]
    fn a_replica_without_an_answer_is_left_for_the_next() {
        assert_eq!(replica_after(0, 0, false, 2), 1);
        assert_eq!(replica_after(1, 1, false, 2), 0);
        assert_eq!(replica_after(0, 0, false, 1), 0);
    }

    #[test]
    fn an_answer_or_a_late_failure_keeps_the_replica() {
        // An HTTP answer, even an error, keeps it.
        assert_eq!(replica_after(0, 0, true, 2), 0);
        // A call to the replica left before fails late: the move already happened.
        assert_eq!(replica_after(1, 0, false, 3), 1);
    }
}
