//! The shared queue through which every worker hands its tally to the one that posts usage.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// The shared queue between workers.
pub trait Queue {
    fn enqueue(&self, item: &[u8]) -> bool;
    fn dequeue(&self) -> Option<Vec<u8>>;
}

/// A queue shared by several owners of one thread (tests: the workers of one Envoy).
impl<Q: Queue + ?Sized> Queue for Rc<Q> {
    fn enqueue(&self, item: &[u8]) -> bool {
        (**self).enqueue(item)
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        (**self).dequeue()
    }
}

/// A queue shared across threads (the native build: the background threads of the
/// configurations that share a store).
impl<Q: Queue + ?Sized> Queue for Arc<Q> {
    fn enqueue(&self, item: &[u8]) -> bool {
        (**self).enqueue(item)
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        (**self).dequeue()
    }
}

/// An in-memory queue within one thread: the workers of one Envoy in tests.
#[derive(Default)]
pub struct LocalQueue(pub RefCell<VecDeque<Vec<u8>>>);

impl Queue for LocalQueue {
    fn enqueue(&self, item: &[u8]) -> bool {
        self.0.borrow_mut().push_back(item.to_vec());
        true
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        self.0.borrow_mut().pop_front()
    }
}
