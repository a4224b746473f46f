//! A worker's background work, over the `Host` trait so that it runs on the host in tests:
//! what the root context (`proxy/root.rs`) does on every tick and with every call's answer.
//!
//! The jobs of `sync/` each sit in a `sync::task::Runner`, which keeps their call in flight,
//! its token and deadline, their lease and backoff. Here they are one list of [`Task`]s: every
//! tick flushes the request counters into Envoy's stats, publishes the store's gauges and ticks
//! each task; an answer goes to the task that awaits its token, and one no task awaits is
//! logged and dropped. What a job takes from the worker before it runs (a tally, the slots it
//! counted in) and how its outcomes are logged and counted is its [`WorkerJob`] impl
//! (`jobs.rs`).
//!
//! A new job or report stream: implement `sync::task::Job` in `sync/` (see `sync/task.rs`),
//! `WorkerJob` in `jobs.rs`, and push its runner in `Background::new` (with a queue in
//! [`Queues`] if its workers hand it work). Host tests drive all of it through `FakeHost`
//! (`tests/background.rs`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use crate::config::Config;
use crate::gathered::Gathered;
use crate::host::Host;
use crate::limits::counters;
use crate::request::Worker;
use crate::store;
use crate::sync::enroll::Enroll;
use crate::sync::fleet::{self, FleetSync};
use crate::sync::queue::Queue;
use crate::sync::refresh::Refresh;
use crate::sync::task::{Job, Runner};
use crate::sync::usage::Usage;

mod jobs;

/// What a task needs to run and to report: the host, the worker, the root context's id (the
/// `#12` of log lines).
pub struct Env<'a> {
    pub host: &'a dyn Host,
    pub worker: &'a Worker,
    pub context_id: u32,
    /// Where requests gathered work for the jobs: the worker's own in the Wasm build (one VM,
    /// one thread), every Envoy worker thread's in the native build.
    pub gathered: &'a [Arc<Gathered>],
}

/// A `sync::task::Job` as a worker runs it.
pub trait WorkerJob: Job {
    /// Before every tick: takes what the requests gathered for the job.
    fn before_tick(&mut self, _env: &Env<'_>) {}
    /// Before an answer is handed to the job.
    fn before_answer(&mut self, _env: &Env<'_>) {}
    /// Logs and counts an outcome.
    fn report(&mut self, env: &Env<'_>, outcome: &Self::Outcome);
}

/// A job in its runner, as the list of tasks holds it.
pub trait Task {
    fn tick(&mut self, env: &Env<'_>);
    /// Whether the answer with `token` is this task's.
    fn awaits(&self, token: u32) -> bool;
    fn on_response(&mut self, env: &Env<'_>, token: u32, body_size: usize);
}

impl<J: WorkerJob> Task for Runner<J> {
    fn tick(&mut self, env: &Env<'_>) {
        self.job_mut().before_tick(env);
        for outcome in Runner::tick(self, env.host) {
            self.job_mut().report(env, &outcome);
        }
    }

    fn awaits(&self, token: u32) -> bool {
        Runner::awaits(self, token)
    }

    fn on_response(&mut self, env: &Env<'_>, token: u32, body_size: usize) {
        self.job_mut().before_answer(env);
        for outcome in Runner::on_response(self, env.host, token, body_size) {
            self.job_mut().report(env, &outcome);
        }
    }
}

/// The shared queues through which the workers hand work to the one that posts it; `None`
/// where the configuration turns the job off.
#[derive(Default)]
pub struct Queues {
    pub usage: Option<Box<dyn Queue>>,
    pub fleet: Option<Box<dyn Queue>>,
}

/// The tick period: half the refresh interval, at most the usage report interval (and half
/// the fleet sync interval when it is on), between 100 ms and 1 s.
pub fn tick_period(config: &Config) -> Duration {
    let mut tick = (config.control.refresh_interval / 2)
        .min(config.usage.report_interval)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    if config.rate_limits.fleet {
        // Half the sync interval, so a sync is never more than that late.
        tick = tick.min(config.rate_limits.sync_interval / 2);
    }
    tick
}

/// Sets the store's gauges (keys, version, age, fleet age) and the count of rate-limit slots
/// the requests of every `gathered` see.
pub fn publish_store_gauges(host: &dyn Host, worker: &Worker, gathered: &[Arc<Gathered>]) {
    let meta = store::read_meta(host);
    let age_seconds = if meta.loaded() {
        host.now_ms().saturating_sub(meta.last_success_ms) / 1000
    } else {
        0
    };
    worker
        .metrics
        .store(host, meta.keys, meta.version, age_seconds);
    let slots = counters::slot_count(host);
    for gathered in gathered {
        gathered.set_slots(slots);
    }
    if worker.config.rate_limits.fleet {
        worker
            .metrics
            .fleet_remote_age(host, fleet::remote_age_seconds(host));
    }
}

/// The background work of one configured worker VM.
pub struct Background {
    context_id: u32,
    worker: Rc<Worker>,
    tasks: Vec<Box<dyn Task>>,
    gathered: Vec<Arc<Gathered>>,
}

impl Background {
    /// The jobs of `worker`'s configuration for the VM `me`: enrolling (with an enrollment
    /// token), the snapshot refresh, and usage reports and the fleet sync where their queue is
    /// given.
    pub fn new(context_id: u32, me: u64, worker: Rc<Worker>, queues: Queues) -> Background {
        let config = &worker.config;
        let cluster = config.control.cluster.as_str();
        // With an enrollment token, the other jobs wait for the credential and present it.
        let mut tasks: Vec<Box<dyn Task>> = Vec::new();
        if let Some(enroll) = Enroll::new(me, &config.control) {
            tasks.push(Box::new(Runner::new(enroll, me, cluster)));
        }
        let refresh = Refresh::new(me, config.control.clone(), config.rate_limits.slots);
        tasks.push(Box::new(
            Runner::new(refresh, me, cluster).presenting(&config.control),
        ));
        if let Some(queue) = queues.usage {
            let usage = Usage::new(me, &config.control, &config.usage, queue);
            tasks.push(Box::new(
                Runner::new(usage, me, cluster).presenting(&config.control),
            ));
        }
        if let Some(queue) = queues.fleet {
            let sync = FleetSync::new(me, &config.control, &config.rate_limits, queue);
            tasks.push(Box::new(
                Runner::new(sync, me, cluster).presenting(&config.control),
            ));
        }
        let gathered = vec![Arc::clone(&worker.gathered)];
        Background {
            context_id,
            worker,
            tasks,
            gathered,
        }
    }

    /// Also takes the work gathered by another worker's requests (the native build: one
    /// background thread for every Envoy worker thread).
    pub fn gather_from(&mut self, gathered: Arc<Gathered>) {
        if !self
            .gathered
            .iter()
            .any(|held| Arc::ptr_eq(held, &gathered))
        {
            self.gathered.push(gathered);
        }
    }

    /// What the VM's request contexts share.
    pub fn worker(&self) -> &Rc<Worker> {
        &self.worker
    }

    /// Every tick: the request counters into Envoy's stats, the store's gauges, every task.
    pub fn on_tick(&mut self, host: &dyn Host) {
        self.worker.metrics.flush(host);
        publish_store_gauges(host, &self.worker, &self.gathered);
        let env = Env {
            host,
            worker: &self.worker,
            context_id: self.context_id,
            gathered: &self.gathered,
        };
        for task in &mut self.tasks {
            task.tick(&env);
        }
    }

    /// The answer to call `token` (a body of `body_size` bytes) goes to the task awaiting it.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let env = Env {
            host,
            worker: &self.worker,
            context_id: self.context_id,
            gathered: &self.gathered,
        };
        match self.tasks.iter_mut().find(|task| task.awaits(token)) {
            Some(task) => task.on_response(&env, token, body_size),
            None => debug!(
                "#{} ignored a response to a call no longer awaited",
                self.context_id
            ),
        }
    }

    /// Sets the store's gauges now (at configuration, before the first tick).
    pub fn publish_store_gauges(&self, host: &dyn Host) {
        publish_store_gauges(host, &self.worker, &self.gathered);
    }
}
