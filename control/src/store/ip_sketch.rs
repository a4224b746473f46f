//! Address sketch rows (`usage_ip_sketch`): each report's registers merged in by maximum, a
//! key's or a team's read back by hour, and old hours rolled into their day (the register
//! maximum over the day, kept at the day's first hour) as usage retention rolls counts up.

use crate::domain::usage_range::SketchRow;
use crate::store::sql::{named_params, value_rows, Params, Result, Row, ToValue, Tx};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Rows per multi-row upsert (4 parameters a row).
const UPSERT_CHUNK: usize = 250;

/// The upsert that keeps the larger value: portable (SQLite's MAX and PostgreSQL's GREATEST
/// differ).
const KEEP_LARGER: &str = "ON CONFLICT (key_id, hour_start, register) DO UPDATE SET value =
     CASE WHEN excluded.value > usage_ip_sketch.value THEN excluded.value
          ELSE usage_ip_sketch.value END";

/// Merges `registers` ((key id, hour start, register) → value) into the stored sketches.
pub fn merge(tx: &Tx, registers: &BTreeMap<(&str, i64, u8), u8>) -> Result<()> {
    let rows: Vec<_> = registers.iter().collect();
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for ((key_id, hour_start, register), value) in chunk {
            values.extend([
                key_id.to_value(),
                hour_start.to_value(),
                i64::from(*register).to_value(),
                i64::from(**value).to_value(),
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO usage_ip_sketch (key_id, hour_start, register, value) VALUES {}
                 {KEEP_LARGER}",
                value_rows(4, chunk.len())
            ),
            Params::Positional(values),
        )?;
    }
    Ok(())
}

fn sketch_row(row: &Row) -> Result<SketchRow> {
    let register: i64 = row.get(1)?;
    let value: i64 = row.get(2)?;
    Ok((
        row.get(0)?,
        u8::try_from(register).unwrap_or(0),
        u8::try_from(value).unwrap_or(0),
    ))
}

/// Key `key_id`'s registers of the hours starting in `[from, to)` (and of rolled-up days
/// overlapping it, at their first hour).
pub fn for_key(tx: &Tx, key_id: &str, from: i64, to: i64) -> Result<Vec<SketchRow>> {
    tx.query_map(
        "SELECT hour_start, register, value FROM usage_ip_sketch
         WHERE key_id = :key_id AND hour_start > CAST(:from AS BIGINT) - 86400 AND hour_start < :to
         ORDER BY 1, 2",
        named_params! { ":key_id": key_id, ":from": from, ":to": to },
        sketch_row,
    )
    .map(|rows| keep_range(rows, from))
}

/// The registers of every key of `team` (every key when `None`), merged per hour.
pub fn for_team(tx: &Tx, team: Option<&str>, from: i64, to: i64) -> Result<Vec<SketchRow>> {
    tx.query_map(
        "SELECT s.hour_start, s.register, MAX(s.value) FROM keys k
         JOIN usage_ip_sketch s ON s.key_id = k.id
         WHERE (CAST(:team AS TEXT) IS NULL OR k.team = :team)
           AND s.hour_start > CAST(:from AS BIGINT) - 86400 AND s.hour_start < :to
         GROUP BY s.hour_start, s.register ORDER BY 1, 2",
        named_params! { ":team": team, ":from": from, ":to": to },
        sketch_row,
    )
    .map(|rows| keep_range(rows, from))
}

/// Hours before `from` are only read for a rolled-up day (at its midnight) overlapping it.
fn keep_range(rows: Vec<SketchRow>, from: i64) -> Vec<SketchRow> {
    rows.into_iter()
        .filter(|(hour, ..)| *hour >= from || hour.rem_euclid(86_400) == 0)
        .collect()
}

/// Rolls the registers of hours before `cutoff` into their day's first hour; returns the
/// hourly rows gone.
pub fn roll_up(tx: &Tx, cutoff: DateTime<Utc>) -> Result<usize> {
    let cutoff = cutoff.timestamp();
    tx.execute(
        &format!(
            "INSERT INTO usage_ip_sketch (key_id, hour_start, register, value)
             SELECT key_id, hour_start - ((hour_start % 86400) + 86400) % 86400, register,
                    MAX(value)
             FROM usage_ip_sketch WHERE hour_start < ?1 AND ((hour_start % 86400) + 86400) % 86400 <> 0
             GROUP BY 1, 2, 3
             {KEEP_LARGER}"
        ),
        [cutoff],
    )?;
    tx.execute(
        "DELETE FROM usage_ip_sketch
         WHERE hour_start < ?1 AND ((hour_start % 86400) + 86400) % 86400 <> 0",
        [cutoff],
    )
}
