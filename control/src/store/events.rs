//! Event rows: a usage batch's events written beside its counts, a key's events read back
//! newest first, and the retention (by age, and by number per key).

use crate::domain::events::{EventRange, OutcomeFilter};
use crate::domain::usage_report::KeyEvent;
use crate::store::sql::{value_rows, Params, Result, Row, ToValue, Tx};

/// Rows per multi-row insert (9 parameters a row).
const INSERT_CHUNK: usize = 100;

/// Writes `events` ((key id, event)) in a few statements.
pub fn insert(tx: &Tx, events: &[(&str, &KeyEvent)]) -> Result<()> {
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut values = Vec::with_capacity(chunk.len() * 9);
        for (key_id, event) in chunk {
            values.extend([
                key_id.to_value(),
                event.at_ms.to_value(),
                event.outcome.to_value(),
                event.status.to_value(),
                event.method.to_value(),
                event.path.to_value(),
                event.client_ip.to_value(),
                event.request_id.to_value(),
                event.proxy_id.to_value(),
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO usage_events (key_id, at_ms, outcome, status, method, path, client_ip,
                     request_id, proxy_id)
                 VALUES {}",
                value_rows(9, chunk.len())
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}

/// The newest events of `key_id` that `range` asks for.
pub fn for_key(tx: &Tx, key_id: &str, range: &EventRange) -> Result<Vec<KeyEvent>> {
    let mut values = vec![
        key_id.to_value(),
        range.before_ms.unwrap_or(i64::MAX).to_value(),
        i64::from(range.limit).to_value(),
    ];
    let outcome = match &range.outcome {
        OutcomeFilter::Any => "",
        OutcomeFilter::Denied => "AND outcome NOT IN ('5xx', 'none')",
        OutcomeFilter::Failed => "AND outcome IN ('5xx', 'none')",
        OutcomeFilter::Exactly(outcome) => {
            values.push(outcome.to_value());
            "AND outcome = ?4"
        }
    };
    tx.query_map(
        &format!(
            "SELECT at_ms, outcome, status, method, path, client_ip, request_id, proxy_id
             FROM usage_events WHERE key_id = ?1 AND at_ms < ?2 {outcome}
             ORDER BY at_ms DESC, seq DESC LIMIT ?3"
        ),
        Params::Positional(values),
        event,
    )
}

fn event(row: &Row) -> Result<KeyEvent> {
    let status: i64 = row.get(2)?;
    Ok(KeyEvent {
        at_ms: row.get(0)?,
        outcome: row.get(1)?,
        status: u32::try_from(status).unwrap_or(0),
        method: row.get(3)?,
        path: row.get(4)?,
        client_ip: row.get(5)?,
        request_id: row.get(6)?,
        proxy_id: row.get(7)?,
    })
}

/// Forgets events before `cutoff_ms` and every key's beyond its newest `max_per_key`; returns
/// how many went.
pub fn prune(tx: &Tx, cutoff_ms: i64, max_per_key: u32) -> Result<usize> {
    let old = tx.execute("DELETE FROM usage_events WHERE at_ms < ?1", [cutoff_ms])?;
    let beyond = tx.execute(
        "DELETE FROM usage_events WHERE seq IN (
             SELECT seq FROM (
                 SELECT seq, ROW_NUMBER() OVER (PARTITION BY key_id ORDER BY at_ms DESC, seq DESC)
                     AS newer
                 FROM usage_events) AS ranked
             WHERE newer > ?1)",
        [i64::from(max_per_key)],
    )?;
    Ok(old + beyond)
}
