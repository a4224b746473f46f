//! What the filter needs from its host, behind a trait so that everything but `proxy/` runs on
//! the host in tests: `FakeHost` here, the real one in `proxy/host.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Someone else wrote the value since we read it.
    CasMismatch,
    /// Any other host failure.
    Host,
}

pub trait Host {
    /// Proxy clock, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Value and CAS token of a shared-data entry (`None` value when absent or empty).
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data entry; with `cas`, only if it has not changed since that read.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;
}

/// Something another worker does in the middle of this one's work (see `FakeHost::interleave`).
pub type Interleaved = Box<dyn FnOnce(&FakeHost)>;

/// An in-memory host for tests, with the same CAS semantics as Envoy's shared data.
#[derive(Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Makes the next N CAS writes fail, to exercise retries.
    pub fail_next_cas: Cell<u32>,
    /// Runs once, just before the first write of a key starting with the given prefix: how a
    /// test makes another worker (another thread in Envoy) act in the middle of this one's work.
    interleaved: RefCell<Option<(String, Interleaved)>>,
}

impl FakeHost {
    pub fn at(now_ms: u64) -> FakeHost {
        let host = FakeHost::default();
        host.now.set(now_ms);
        host
    }

    pub fn entry_count(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Runs `other` just before the next write of a key that starts with `prefix`.
    pub fn interleave(&self, prefix: &str, other: impl FnOnce(&FakeHost) + 'static) {
        *self.interleaved.borrow_mut() = Some((prefix.to_string(), Box::new(other)));
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()).filter(|v| !v.is_empty()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let due = {
            let mut slot = self.interleaved.borrow_mut();
            match slot.as_ref() {
                Some((prefix, _)) if key.starts_with(prefix.as_str()) => slot.take(),
                _ => None,
            }
        };
        if let Some((_, other)) = due {
            other(self);
        }
        let mut entries = self.entries.borrow_mut();
        if cas.is_some() && self.fail_next_cas.get() > 0 {
            self.fail_next_cas.set(self.fail_next_cas.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        if let (Some(expected), Some((_, current))) = (cas, entries.get(key)) {
            if expected != *current {
                return Err(WriteError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}
