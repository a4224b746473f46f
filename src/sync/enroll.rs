//! Enrolling this Envoy (`POST /v1/proxies/enroll`): with an enrollment token in the
//! configuration, one worker per Envoy obtains the proxy's own credential and keeps it for
//! every worker (`identity.rs`); the other jobs wait for it and present it. Enrolled again when
//! the control service refuses the credential (401: replaced or revoked), under the same name,
//! so the identity and its history stay.
//!
//! The name is the configured `proxy_name`, else Envoy's node id (an Istio sidecar's is unique
//! per pod and stable across container restarts), else one this VM makes up.

use std::time::Duration;

use keygate_contract::enrollment::{self, EnrollAnswer, EnrollRequest, ENROLL_PATH};

use crate::config::{ControlConfig, Enrollment};
use crate::host::Host;
use crate::sync::identity::{self, Enrolled};
use crate::sync::task::{Call, CallError, Job, JobLease, Response, Start, Step};

const LEASE_KEY: &str = "keygate.enroll.lease";
/// How often a worker looks whether the identity is still held.
const CHECK_EVERY_MS: u64 = 1_000;
/// Where Envoy's node id is read: the attribute's current name, then its older one.
const NODE_ID_PATHS: [&[&str]; 2] = [&["xds", "node", "id"], &["node", "id"]];
/// Shared-data key of the name made up when neither `proxy_name` nor a node id gives one.
const MADE_UP_NAME_KEY: &str = "keygate.proxy_name";
/// The largest answer read: an id and a credential.
const MAX_ANSWER_BYTES: usize = 4096;

/// What happened, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled { proxy_id: String, name: String },
    Failed(String),
}

/// The enrollment job of one VM.
pub struct Enroll {
    me: u64,
    control: ControlConfig,
    enrollment: Enrollment,
}

impl Enroll {
    /// `None` when the configuration has no enrollment token.
    pub fn new(me: u64, control: &ControlConfig) -> Option<Enroll> {
        Some(Enroll {
            me,
            control: control.clone(),
            enrollment: control.enrollment()?.clone(),
        })
    }

    /// The configured name, else Envoy's node id when it is a valid name, else one made up once
    /// per Envoy and kept in shared data, so every worker enrolls under the same name (a
    /// restarted Envoy makes up another: a new identity; the log says to set a name).
    fn name(&self, host: &dyn Host) -> (String, bool) {
        if let Some(name) = &self.enrollment.proxy_name {
            return (name.clone(), false);
        }
        // `xds.node.id` in Envoy 1.40 (probed: `node.id` reads as absent from a root context).
        let node_id = NODE_ID_PATHS
            .iter()
            .find_map(|path| host.property(path))
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|id| enrollment::name("name", id).is_ok());
        if let Some(id) = node_id {
            return (id, false);
        }
        let held = host
            .get_shared(MADE_UP_NAME_KEY)
            .0
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|name| enrollment::name("name", name).is_ok());
        let name = held.unwrap_or_else(|| {
            let made = format!("envoy-{:016x}", self.me);
            // Only the enroll lease's holder writes it, so an unconditional write cannot race.
            let _ = host.set_shared(MADE_UP_NAME_KEY, made.as_bytes(), None);
            made
        });
        (name, true)
    }
}

impl Job for Enroll {
    type Outcome = EnrollOutcome;
    /// The name enrolled under.
    type Pending = String;
    const LEASE: JobLease = JobLease {
        key: LEASE_KEY,
        sticky: false,
    };

    fn call_timeout(&mut self, _host: &dyn Host) -> Duration {
        self.control.timeout
    }

    fn max_body_bytes(&self) -> usize {
        MAX_ANSWER_BYTES
    }

    fn start(&mut self, host: &dyn Host, _fence: u64) -> Start<String, EnrollOutcome> {
        if identity::current(host).is_some() {
            return Start::Idle {
                next_due_ms: host.now_ms() + CHECK_EVERY_MS,
            };
        }
        let (name, made_up) = self.name(host);
        if made_up {
            log::warn!(
                "enrolling as {name:?}, a name made up for this run: set Envoy's node id (--service-node) or control.proxy_name, or each restart is a new proxy identity (and a revoked one can enroll again)"
            );
        }
        let request = EnrollRequest {
            name: name.clone(),
            labels: self.enrollment.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let mut call = Call::post_json(&self.control, ENROLL_PATH, body);
        call.headers.push((
            "authorization".into(),
            format!("Bearer {}", self.enrollment.token),
        ));
        Start::Call {
            call,
            pending: name,
            report: None,
        }
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        name: String,
        response: Response<'_>,
    ) -> Step<String, EnrollOutcome> {
        let failed = |reason: String| Step::Done {
            outcome: EnrollOutcome::Failed(reason),
            next_due_ms: None,
        };
        match response.status {
            Some(200) => {}
            Some(status) => {
                return failed(format!(
                    "the control service refused to enroll {name:?} (HTTP {status}{})",
                    match status {
                        401 => ": no usable enrollment token",
                        403 => ": this name was revoked",
                        429 => ": too many enrollments, retrying later",
                        _ => "",
                    }
                ))
            }
            None => return failed("no response".into()),
        }
        let answer = response
            .body
            .and_then(|body| serde_json::from_slice::<EnrollAnswer>(body).ok())
            .filter(|answer| {
                enrollment::is_credential(&answer.credential)
                    && keygate_contract::fields::identifier("proxy_id", &answer.proxy_id).is_ok()
            });
        let Some(answer) = answer else {
            return failed("the enrollment answer was not an identity and a credential".into());
        };
        let enrolled = Enrolled {
            proxy_id: answer.proxy_id.clone(),
            credential: answer.credential,
        };
        if !identity::store(host, &enrolled) {
            return failed("could not keep the credential in shared data".into());
        }
        Step::Done {
            outcome: EnrollOutcome::Enrolled {
                proxy_id: answer.proxy_id,
                name,
            },
            next_due_ms: Some(host.now_ms() + CHECK_EVERY_MS),
        }
    }

    fn on_failure(&mut self, _host: &dyn Host, name: String, error: CallError) -> EnrollOutcome {
        EnrollOutcome::Failed(format!("enrolling {name:?}: {error}"))
    }
}

#[cfg(test)]
mod tests;
