//! Keygate's metrics as Envoy stats, from any thread: what `Host::define_metric`,
//! `increment_metric` and `record_metric` become in the native build.
//!
//! Every metric is defined once, on Envoy's main thread when the configuration is made (Envoy
//! refuses new stats later); worker threads and the background thread then find the same ids
//! by name in `Defined`. Envoy's counters and gauges are atomic, so they are added to and set
//! from whichever thread counts.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use keygate::host::MetricKind;

/// Where metrics go.
pub trait Stats: Send + Sync {
    /// The id of the metric `name` (`None`: it could not be defined).
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment(&self, id: u32, delta: i64);
    fn set(&self, id: u32, value: u64);
    /// Envoy allows no more definitions (its configuration is made).
    fn freeze(&self);
}

/// Metrics by name, once defined; ids are ours (from 1: `Metrics` treats 0 as undefined), each
/// naming the kind and Envoy's own id of that kind.
#[derive(Default)]
pub struct Defined {
    by_name: Mutex<HashMap<String, u32>>,
    /// The metrics while they are defined.
    defining: Mutex<Vec<(MetricKind, u64)>>,
    /// The metrics once Envoy allows no more definitions (`freeze` moves them here): what every
    /// count reads, from every thread, without a lock.
    frozen: OnceLock<Vec<(MetricKind, u64)>>,
}

impl Defined {
    /// Our id of `name`: the one it has, or the next, with Envoy's id from `define_in_envoy`
    /// (`None` when Envoy refused it; it is then asked again next time).
    pub fn id_of(
        &self,
        kind: MetricKind,
        name: &str,
        define_in_envoy: impl FnOnce() -> Option<u64>,
    ) -> Option<u32> {
        let mut by_name = self
            .by_name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = by_name.get(name) {
            return Some(*id);
        }
        if self.frozen.get().is_some() {
            return None;
        }
        let envoy_id = define_in_envoy()?;
        let mut metrics = self
            .defining
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        metrics.push((kind, envoy_id));
        let id = u32::try_from(metrics.len()).ok()?;
        by_name.insert(name.to_string(), id);
        Some(id)
    }

    /// No more definitions: later counts read the ids without a lock (later `id_of` calls still
    /// find names defined before, and define nothing new).
    pub fn freeze(&self) {
        let metrics = std::mem::take(
            &mut *self
                .defining
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let _ = self.frozen.set(metrics);
    }

    /// Envoy's id and the kind of our `id`.
    pub fn envoy_id(&self, id: u32) -> Option<(MetricKind, u64)> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        if let Some(frozen) = self.frozen.get() {
            return frozen.get(index).copied();
        }
        self.defining
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(index)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_defined_in_envoy_once_and_found_after() {
        let defined = Defined::default();
        let first = defined.id_of(MetricKind::Counter, "a", || Some(0));
        let again = defined.id_of(MetricKind::Counter, "a", || panic!("defined twice"));
        assert_eq!(first, Some(1));
        assert_eq!(again, Some(1));
        let gauge = defined.id_of(MetricKind::Gauge, "g", || Some(0));
        assert_eq!(gauge, Some(2));
        assert_eq!(defined.envoy_id(1), Some((MetricKind::Counter, 0)));
        assert_eq!(defined.envoy_id(2), Some((MetricKind::Gauge, 0)));
        assert_eq!(defined.envoy_id(0), None);
        assert_eq!(defined.envoy_id(3), None);
    }

    #[test]
    fn frozen_ids_are_the_same_and_nothing_new_is_defined() {
        let defined = Defined::default();
        defined.id_of(MetricKind::Counter, "a", || Some(5));
        defined.freeze();
        assert_eq!(defined.envoy_id(1), Some((MetricKind::Counter, 5)));
        assert_eq!(defined.id_of(MetricKind::Counter, "a", || None), Some(1));
        assert_eq!(defined.id_of(MetricKind::Gauge, "late", || Some(9)), None);
        assert_eq!(defined.envoy_id(2), None);
    }

    #[test]
    fn a_refused_definition_is_not_remembered() {
        let defined = Defined::default();
        assert_eq!(defined.id_of(MetricKind::Counter, "a", || None), None);
        assert_eq!(defined.id_of(MetricKind::Counter, "a", || Some(4)), Some(1));
        assert_eq!(defined.envoy_id(1), Some((MetricKind::Counter, 4)));
    }
}
