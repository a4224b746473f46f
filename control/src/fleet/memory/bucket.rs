//! One bucket of one key and window: every proxy's count in it, their sum, and what of it was
//! flushed to Redis and read back.

use std::sync::Arc;

#[derive(Debug, Default)]
pub(super) struct Bucket {
    /// Sum of `proxies`' counts.
    pub(super) total: u64,
    /// Sum of `proxies`' flushed counts.
    pub(super) flushed: u64,
    /// The fleet's total in Redis as last read (it holds every flushed count, this replica's
    /// included); 0 for a key that is not published.
    pub(super) remote: u64,
    pub(super) proxies: Vec<ProxyCount>,
}

#[derive(Debug)]
pub(super) struct ProxyCount {
    pub(super) proxy: Arc<str>,
    pub(super) count: u64,
    /// What this replica last wrote to Redis for the proxy (never more than `count`).
    pub(super) flushed: u64,
}

/// Where an interned proxy name lives: buckets keep their proxies ordered by it, so finding one
/// is a binary search (a key shared by every Envoy of a replica has hundreds per bucket).
fn address(proxy: &Arc<str>) -> usize {
    Arc::as_ptr(proxy).cast::<u8>() as usize
}

impl Bucket {
    /// Where `proxy` (an interned name) is in `proxies`, or where it would go.
    pub(super) fn position(&self, proxy: &Arc<str>) -> Result<usize, usize> {
        self.proxies
            .binary_search_by_key(&address(proxy), |held| address(&held.proxy))
    }

    /// Raises `proxy`'s count to `count` (never lowers it: a late retry carries an older,
    /// smaller count). Answers by how much it rose.
    pub(super) fn raise(&mut self, proxy: &Arc<str>, count: u64) -> u64 {
        match self.position(proxy) {
            Ok(at) => {
                let held = &mut self.proxies[at];
                if count <= held.count {
                    return 0;
                }
                let rose = count - held.count;
                self.total = self.total.saturating_add(rose);
                held.count = count;
                rose
            }
            Err(at) => {
                self.total = self.total.saturating_add(count);
                self.proxies.insert(
                    at,
                    ProxyCount {
                        proxy: Arc::clone(proxy),
                        count,
                        flushed: 0,
                    },
                );
                count
            }
        }
    }

    /// Lowers `proxy`'s count to `count` (undoing a refused post's raises), dropping it at 0.
    /// Answers by how much it fell.
    pub(super) fn lower(&mut self, proxy: &Arc<str>, count: u64) -> u64 {
        let Ok(at) = self.position(proxy) else {
            return 0;
        };
        let held = &mut self.proxies[at];
        let fell = held.count.saturating_sub(count);
        self.total = self.total.saturating_sub(fell);
        held.count -= fell;
        // Never more than the count was flushed (a refused post is undone before any flush).
        let over = held.flushed.saturating_sub(held.count);
        held.flushed -= over;
        self.flushed = self.flushed.saturating_sub(over);
        if held.count == 0 {
            self.proxies.remove(at);
        }
        fell
    }

    /// `proxy`'s count, looked for at `guess` first and `guess` set to where it was found:
    /// the buckets of a key mostly hold the same proxies, in the same (address) order, so
    /// across a key's buckets one probe finds it where a search would make seven, each a
    /// likely cache miss. `proxy` is the interned name (`Counts::proxy_names`).
    pub(super) fn of_near(&self, proxy: &Arc<str>, guess: &mut usize) -> u64 {
        if let Some(held) = self.proxies.get(*guess) {
            if Arc::ptr_eq(&held.proxy, proxy) {
                return held.count;
            }
        }
        match self.position(proxy) {
            Ok(at) => {
                *guess = at;
                self.proxies[at].count
            }
            Err(_) => 0,
        }
    }

    /// The fleet-wide count: Redis's total plus what this replica's Envoys admitted since they
    /// were last flushed (both 0 and the local sum for a key that is not published).
    pub(super) fn fleet_total(&self) -> u64 {
        self.remote
            .saturating_add(self.total.saturating_sub(self.flushed))
    }
}
