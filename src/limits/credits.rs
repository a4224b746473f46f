//! Credits: requests of a busy key that a worker counted before they arrived, so that a key far
//! from its limits costs one shared-data read and CAS write per several requests instead of one
//! per request (`docs/rate-limits.md`, "Counting ahead").
//!
//! A credit is a request already counted in the key's slot, the count every worker and the
//! fleet sync read, before the request it admits arrives: no request is admitted that the
//! shared count has not counted, so no limit is exceeded. A credit is good for `CREDIT_TTL_MS`
//! after its count and only while every window is still in the bucket it was counted in
//! (otherwise it would sit in the wrong bucket): a credited request is judged on what the
//! Envoy knew at most that long before, which is all that counting ahead adds to the fleet's
//! overshoot bound (`docs/rate-limits.md`). Counting a request, a worker asks for as many as
//! the key's last grant admitted (twice as many when they ran out before their time), at most
//! `MAX_ASK`; the window maths grants more than one only far from every limit
//! (`window::admit`). Credits left unused are given back by the key's next count, in the same
//! CAS write, or when another key takes their entry here.
//!
//! Per worker: `ENTRIES` entries, one place per key (by its probe seed), a fixed array. `admit`
//! is the request path's count: from a credit, or in shared data through `counters`.

use std::cell::RefCell;

use crate::host::Host;
use crate::limits::counters::{self, Admission, Ahead, KeyTag};
use crate::limits::window::{self, GiveBack, Usage, Windows};
use keygate_contract::snapshot::Limits;

/// Keys a worker holds credits of at once (each has one entry, chosen by its probe seed).
pub const ENTRIES: usize = 64;
/// The most requests one count asks for.
pub const MAX_ASK: u64 = 64;
/// How long a credit is good for after its count: how much older, at most, the view a
/// credited request is judged on is than a request counted on its own.
pub const CREDIT_TTL_MS: u64 = 50;

/// Credits of one key, and what its requests were told when they were counted.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: KeyTag,
    /// The window limits the credits were counted under (0: none).
    limits: [u64; 3],
    /// The bucket of each window they were counted in.
    buckets: [u64; 3],
    /// When they were counted (proxy clock ms).
    counted_at_ms: u64,
    /// Credits counted and not used yet.
    left: u64,
    /// The usage the request that counted the credits reported, and how many were used since
    /// (the grant has admitted `used + 1`).
    counted_usage: Usage,
    used: u64,
    /// When the tightest window frees a request, as that request was told (proxy clock ms).
    reset_at_ms: u64,
}

impl Entry {
    fn give_back(&self) -> Option<GiveBack> {
        (self.left > 0).then(|| GiveBack {
            count: self.left,
            buckets: self.buckets,
            limited: self.limits.map(|limit| limit > 0),
        })
    }

    /// Takes the unused credits out, to give back: no longer held here.
    fn hand_back(&mut self) -> Option<GiveBack> {
        let back = self.give_back()?;
        self.left = 0;
        Some(back)
    }

    /// Requests this grant admitted: the one that counted it and the credits used since.
    fn admitted(&self) -> u64 {
        self.used + 1
    }
}

/// What a request that is counted in shared data asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Requests to count at once (this one and credits for the next; `window::admit` may
    /// grant fewer), and unused credits of this key to give back in the same write.
    pub ahead: Ahead,
    /// Another key's unused credits in the entry this key takes: give them back first.
    pub evicted: Option<(KeyTag, GiveBack)>,
}

/// How the count of a request went, for `Credits::settle`.
#[derive(Debug, Clone, Copy)]
pub enum Settled {
    /// Admitted: `granted` requests counted (this one included), reporting `usage`.
    Counted { granted: u64, usage: Usage },
    /// Refused, with the key's credits given back.
    Refused,
    /// Nothing was written (no slot, contention): the credits are where they were.
    Unwritten,
}

/// A worker's credits.
pub struct Credits {
    entries: Vec<Option<Entry>>,
    /// The entry `sweep` looks at next.
    sweep_at: usize,
}

impl Default for Credits {
    fn default() -> Credits {
        Credits {
            entries: vec![None; ENTRIES],
            sweep_at: 0,
        }
    }
}

fn place(key: KeyTag) -> usize {
    (key.1 % ENTRIES as u64) as usize
}

impl Credits {
    fn entry_mut(&mut self, key: KeyTag) -> Option<&mut Entry> {
        self.entries
            .get_mut(place(key))?
            .as_mut()
            .filter(|entry| entry.key == key)
    }

    /// Admits a request of `key` with one of its credits, if it has one counted under these
    /// window `limits` in the current `buckets`: the usage to report.
    pub fn take(
        &mut self,
        key: KeyTag,
        limits: [u64; 3],
        buckets: [u64; 3],
        now_ms: u64,
    ) -> Option<Usage> {
        let entry = self.entry_mut(key)?;
        let fresh = now_ms.saturating_sub(entry.counted_at_ms) < CREDIT_TTL_MS;
        if entry.left == 0 || !fresh || entry.limits != limits || entry.buckets != buckets {
            return None;
        }
        entry.left -= 1;
        entry.used += 1;
        let mut usage = entry.counted_usage;
        let tightest = usage.tightest().map(|(window, _)| window);
        for (window, numbers) in usage.windows.iter_mut().enumerate() {
            if let Some(numbers) = numbers {
                numbers.remaining = numbers.remaining.saturating_sub(entry.used);
                numbers.reset_ms = if Some(window) == tightest {
                    entry.reset_at_ms.saturating_sub(now_ms).max(1)
                } else {
                    0
                };
            }
        }
        Some(usage)
    }

    /// What counting a request of `key` in shared data should ask for at `now_ms`: more than
    /// one only for a key whose last grant here, under the same limits, is recent.
    pub fn ask(&self, key: KeyTag, limits: [u64; 3], now_ms: u64) -> Ask {
        let held = self.entries.get(place(key)).copied().flatten();
        let Some(entry) = held.filter(|entry| entry.key == key) else {
            return Ask {
                ahead: Ahead::ONE,
                evicted: held.and_then(|other| Some((other.key, other.give_back()?))),
            };
        };
        let age_ms = now_ms.saturating_sub(entry.counted_at_ms);
        let want = if entry.limits != limits || age_ms >= 2 * CREDIT_TTL_MS {
            1
        } else if entry.left == 0 && age_ms < CREDIT_TTL_MS {
            // They ran out before their time: twice as many.
            entry.admitted().saturating_mul(2)
        } else {
            // As many as the last grant admitted.
            entry.admitted()
        };
        Ask {
            ahead: Ahead {
                want: want.clamp(1, MAX_ASK),
                give_back: entry.give_back(),
            },
            evicted: None,
        }
    }

    /// Records how counting a request of `key` went (after `ask`, with its answer written or
    /// not). `buckets`: the window buckets at `now_ms`, when it was counted.
    pub fn settle(
        &mut self,
        key: KeyTag,
        limits: [u64; 3],
        buckets: [u64; 3],
        settled: Settled,
        now_ms: u64,
    ) {
        let Some(slot) = self.entries.get_mut(place(key)) else {
            return;
        };
        match settled {
            Settled::Counted { granted, usage } => {
                let reset_ms = usage.tightest().map_or(0, |(_, numbers)| numbers.reset_ms);
                *slot = Some(Entry {
                    key,
                    limits,
                    buckets,
                    counted_at_ms: now_ms,
                    left: granted.saturating_sub(1),
                    counted_usage: usage,
                    used: 0,
                    reset_at_ms: now_ms.saturating_add(reset_ms),
                });
            }
            // The count wrote the give-back `ask` carried.
            Settled::Refused => {
                if let Some(entry) = slot.as_mut().filter(|entry| entry.key == key) {
                    entry.hand_back();
                }
            }
            Settled::Unwritten => {}
        }
    }

    /// Looks at the next entry in turn: the credits of a key other than `current` that
    /// outlived their time unused, to give back (they are no longer held here).
    pub fn sweep(&mut self, current: KeyTag, now_ms: u64) -> Option<(KeyTag, GiveBack)> {
        let at = self.sweep_at;
        self.sweep_at = (at + 1) % ENTRIES;
        let entry = self.entries.get_mut(at)?.as_mut()?;
        let expired = now_ms.saturating_sub(entry.counted_at_ms) >= CREDIT_TTL_MS;
        if entry.key == current || !expired {
            return None;
        }
        Some((entry.key, entry.hand_back()?))
    }

    /// Takes `key`'s unused credits out of its entry, to give back.
    pub fn take_back(&mut self, key: KeyTag) -> Option<GiveBack> {
        self.entry_mut(key)?.hand_back()
    }

    /// Forgets `key`'s credits (given back after another key took their entry, or lost).
    pub fn forget(&mut self, key: KeyTag) {
        if let Some(slot) = self.entries.get_mut(place(key)) {
            if slot.is_some_and(|entry| entry.key == key) {
                *slot = None;
            }
        }
    }
}

/// Where and when a request is counted: the host's shared data, the configured windows, the
/// slot table's capacity, the proxy clock.
pub struct Table<'a> {
    pub host: &'a dyn Host,
    pub windows: &'a Windows,
    pub capacity: u64,
    pub now_ms: u64,
}

/// Counts a request of `key` with `limits` at `now_ms`: with one of the worker's `credits` if
/// it has one (`Admission::Credited`, no shared data touched), else in the table of `capacity`
/// slots, asking for credits for the key's next requests. Each call also looks at one more
/// entry of the table and gives back the credits of another key that outlived their time
/// unused (its traffic here stopped); `written` hears the slot of any other key it wrote, for
/// the fleet sync to send again.
pub fn admit(
    credits: &RefCell<Credits>,
    table: &Table<'_>,
    key: KeyTag,
    limits: &Limits,
    written: &mut dyn FnMut(u64),
) -> Admission {
    let &Table {
        host,
        windows,
        capacity,
        now_ms,
    } = table;
    let mut give_back_other = |other: KeyTag, back: GiveBack| {
        if let Some(slot) = counters::give_back(host, other, &back, windows, capacity, now_ms) {
            written(slot);
        }
    };
    let stale = credits.borrow_mut().sweep(key, now_ms);
    if let Some((other, back)) = stale {
        give_back_other(other, back);
    }
    // Never with a concurrency limit, where each request holds its own place (a key whose plan
    // gained one gives back what it held).
    if limits.concurrent.is_some() {
        let give_back = credits.borrow_mut().take_back(key);
        let ahead = Ahead { want: 1, give_back };
        return counters::admit(host, key, limits, windows, capacity, now_ms, ahead);
    }
    let limit_values = window::limit_values(limits);
    let buckets = windows.buckets_at(now_ms);
    let ask = {
        let mut held = credits.borrow_mut();
        if let Some(usage) = held.take(key, limit_values, buckets, now_ms) {
            return Admission::Credited { usage };
        }
        let ask = held.ask(key, limit_values, now_ms);
        if let Some((other, _)) = ask.evicted {
            held.forget(other);
        }
        ask
    };
    if let Some((other, back)) = ask.evicted {
        give_back_other(other, back);
    }
    let admission = counters::admit(host, key, limits, windows, capacity, now_ms, ask.ahead);
    let settled = match &admission {
        Admission::Admitted { usage, granted, .. } => Settled::Counted {
            granted: *granted,
            usage: *usage,
        },
        Admission::Refused { .. } => Settled::Refused,
        Admission::Credited { .. } | Admission::NoSlot | Admission::Contended => Settled::Unwritten,
    };
    credits
        .borrow_mut()
        .settle(key, limit_values, buckets, settled, now_ms);
    admission
}

#[cfg(test)]
mod tests;
