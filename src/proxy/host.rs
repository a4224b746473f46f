//! The real `Host`: Envoy, through the never-panicking `abi` calls.

use crate::host::{Host, WriteError};
use crate::proxy::abi;
use crate::sync::queue::Queue;

/// The real host: Envoy's clock and shared data, through the never-panicking `abi` calls.
pub struct ProxyHost;

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        abi::current_time_nanos().map_or(0, |nanos| nanos / 1_000_000)
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match abi::get_shared_data(key) {
            Ok((value, cas)) => (value.filter(|v| !v.is_empty()), cas),
            Err(_) => (None, None),
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(abi::HostError::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Host),
        }
    }
}

/// Envoy's shared queue.
pub struct ProxyQueue(pub u32);

impl Queue for ProxyQueue {
    fn enqueue(&self, item: &[u8]) -> bool {
        abi::enqueue_shared_queue(self.0, item).is_ok()
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        abi::dequeue_shared_queue(self.0).ok().flatten()
    }
}
