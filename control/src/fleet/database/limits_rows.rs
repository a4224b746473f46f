//! The `fleet_limits` rows: each key's limits as Envoys last declared them, until when it is a
//! candidate for the hot keys, and the one proxy that ever sent it.

use super::{as_i64, as_u64, READ_CHUNK};
use crate::fleet::frame::Frame;
use crate::fleet::json_params::{json_array, json_texts};
use crate::store::sql::{params, Params, Result, ToValue, Tx};
use keygate_contract::fleet::{KeyCounts, WINDOWS};
use std::collections::{BTreeMap, HashMap};

/// Limits rows per multi-row upsert (7 parameters a row; they change rarely).
const LIMITS_ROWS: usize = 1_000;
/// A key's limits row is rewritten when its limits change, or at most this often to note it is
/// still in use.
const SEEN_REFRESH_MS: u64 = 60_000;

/// A key's limits row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) limits: [Option<u64>; WINDOWS],
    pub(super) hot_until_ms: u64,
    pub(super) seen_ms: u64,
    /// The one proxy that ever sent the key (while its row lives); `None` once two have.
    pub(super) sole_proxy: Option<String>,
}

/// The limits rows of `tags` that exist.
pub(super) fn read_limits(tx: &Tx, tags: &[&str]) -> Result<HashMap<String, Limits>> {
    let mut stored = HashMap::with_capacity(tags.len());
    for chunk in tags.chunks(READ_CHUNK) {
        let rows = tx.query(
            &format!(
                "SELECT key_tag, per_minute, per_hour, per_day, hot_until_ms, seen_ms, sole_proxy
                 FROM fleet_limits WHERE key_tag IN ({})",
                json_texts(tx.dialect(), 1)
            ),
            params![json_array(chunk)?],
        )?;
        for row in rows {
            let limit =
                |index| -> Result<Option<u64>> { Ok(row.get::<Option<i64>>(index)?.map(as_u64)) };
            stored.insert(
                row.get::<String>(0)?,
                Limits {
                    limits: [limit(1)?, limit(2)?, limit(3)?],
                    hot_until_ms: as_u64(row.get(4)?),
                    seen_ms: as_u64(row.get(5)?),
                    sole_proxy: row.get(6)?,
                },
            );
        }
    }
    Ok(stored)
}

/// The key's limits row as it should be now, if that differs enough from the stored one to be
/// worth a write: other limits, newly hot (or hot for longer), a second proxy, or not noted for
/// a while.
pub(super) fn updated_limits(
    stored: Option<&Limits>,
    key: &KeyCounts,
    proxy: &str,
    totals: &[u64; WINDOWS],
    frame: &Frame,
    now_ms: u64,
) -> Option<Limits> {
    // Hot until the counts that make it hot may have left the longest window it is hot in.
    let hot_for_ms = (0..WINDOWS)
        .filter(|&window| match key.limits[window] {
            Some(limit) if limit > 0 => totals[window].saturating_mul(2) >= limit,
            _ => false,
        })
        .map(|window| frame.span[window].saturating_mul(frame.bucket_ms[window]))
        .max();
    let hot_until_ms = hot_for_ms.map_or(0, |ms| now_ms.saturating_add(ms));
    let sole_proxy = match stored {
        None => Some(proxy.to_string()),
        Some(row) => row.sole_proxy.clone().filter(|sole| sole == proxy),
    };
    let wanted = Limits {
        limits: key.limits,
        hot_until_ms: stored.map_or(0, |row| row.hot_until_ms).max(hot_until_ms),
        seen_ms: now_ms,
        sole_proxy,
    };
    match stored {
        Some(row)
            if row.limits == wanted.limits
                && row.sole_proxy == wanted.sole_proxy
                && row.hot_until_ms.saturating_add(SEEN_REFRESH_MS) >= hot_until_ms
                && row.seen_ms.saturating_add(SEEN_REFRESH_MS) > now_ms =>
        {
            None
        }
        _ => Some(wanted),
    }
}

pub(super) fn write_limits(tx: &Tx, changed: &BTreeMap<&str, Limits>) -> Result<()> {
    let rows: Vec<_> = changed.iter().collect();
    for chunk in rows.chunks(LIMITS_ROWS) {
        let mut values = Vec::with_capacity(chunk.len() * 7);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (tag, row) in chunk {
            let first = values.len() + 1;
            tuples.push(format!(
                "(?{first}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5,
                first + 6
            ));
            values.push(tag.to_value());
            values.extend(row.limits.iter().map(|limit| limit.map(as_i64).to_value()));
            values.push(as_i64(row.hot_until_ms).to_value());
            values.push(as_i64(row.seen_ms).to_value());
            values.push(row.sole_proxy.to_value());
        }
        tx.execute(
            &format!(
                "INSERT INTO fleet_limits
                     (key_tag, per_minute, per_hour, per_day, hot_until_ms, seen_ms, sole_proxy)
                 VALUES {}
                 ON CONFLICT (key_tag) DO UPDATE SET
                     per_minute = excluded.per_minute, per_hour = excluded.per_hour,
                     per_day = excluded.per_day,
                     hot_until_ms = CASE WHEN excluded.hot_until_ms > fleet_limits.hot_until_ms
                                         THEN excluded.hot_until_ms
                                         ELSE fleet_limits.hot_until_ms END,
                     seen_ms = excluded.seen_ms,
                     sole_proxy = CASE WHEN fleet_limits.sole_proxy = excluded.sole_proxy
                                       THEN excluded.sole_proxy END",
                tuples.join(", ")
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}
