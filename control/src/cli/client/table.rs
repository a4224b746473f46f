//! Plain-text rendering of keys for people: tables and a detail view that fit an 80-column
//! terminal. Long names and teams are cut with `…` in tables (`show` or `--json` has them
//! whole); long values in the detail and usage views wrap onto more lines.

use crate::cli::client::answers::{AuditEntry, EffectiveLimits, Key, Token};
use crate::domain::clock;
use chrono::{DateTime, Utc};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The widest line any table prints.
pub const MAX_WIDTH: usize = 80;

const GAP: &str = "  ";

/// How a column gives way when the table is wider than [`MAX_WIDTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never narrower than its widest cell (ids, instants, numbers).
    Keep,
    /// Cut with `…`.
    Truncate,
    /// Broken onto more lines, between words where it can.
    Wrap,
}

#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub header: &'a str,
    pub fit: Fit,
}

pub(crate) const fn column(header: &str, fit: Fit) -> Column<'_> {
    Column { header, fit }
}

/// How wide `text` shows in a terminal (East Asian wide characters and emoji take two columns).
fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

/// Columns no wider than it takes to read a few characters.
fn min_width(column: &Column) -> usize {
    let floor = match column.fit {
        Fit::Keep => return usize::MAX,
        Fit::Truncate => 4,
        Fit::Wrap => 12,
    };
    width(column.header).max(floor)
}

/// Each column's width: as wide as its widest cell, then the widest shrinkable column narrowed
/// one at a time until the line fits `MAX_WIDTH` (or nothing may shrink further).
fn widths(columns: &[Column], rows: &[Vec<String>], with_header: bool) -> Vec<usize> {
    let mut widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let header = if with_header { width(column.header) } else { 0 };
            rows.iter()
                .filter_map(|row| row.get(index))
                .map(|cell| width(cell))
                .fold(header, usize::max)
        })
        .collect();
    let gaps = GAP.len() * columns.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > MAX_WIDTH {
        let widest = widths
            .iter()
            .zip(columns)
            .enumerate()
            .filter(|(_, (width, column))| **width > min_width(column))
            .max_by_key(|(index, (width, _))| (**width, usize::MAX - index))
            .map(|(index, _)| index);
        match widest {
            Some(index) => widths[index] -= 1,
            None => break,
        }
    }
    widths
}

/// `text` cut to `max` columns, ending in `…` when anything was cut.
fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + char_width(c) + 1 > max {
            break;
        }
        used += char_width(c);
        cut.push(c);
    }
    cut.push('…');
    cut
}

/// `text` in lines of at most `max` columns, broken at spaces, and inside words longer than a
/// line.
fn wrap(text: &str, max: usize) -> Vec<String> {
    if width(text) <= max {
        return vec![text.to_string()];
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let joined = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if width(&joined) <= max {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            if width(&line) + char_width(c) > max && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            line.push(c);
        }
    }
    lines.push(line);
    lines
}

/// The lines of one cell at `width`.
fn cell_lines(cell: &str, fit: Fit, width: usize) -> Vec<String> {
    match fit {
        Fit::Keep => vec![cell.to_string()],
        Fit::Truncate => vec![truncate(cell, width)],
        Fit::Wrap => wrap(cell, width),
    }
}

fn pad(text: &str, to: usize) -> String {
    format!("{text}{}", " ".repeat(to.saturating_sub(width(text))))
}

/// Left-aligned columns separated by two spaces, at most `MAX_WIDTH` wide unless the columns
/// that keep their width alone are wider; the header row first when `with_header`.
pub fn render(columns: &[Column], rows: &[Vec<String>], with_header: bool) -> String {
    let widths = widths(columns, rows, with_header);
    let header: Vec<String> = columns
        .iter()
        .map(|column| column.header.to_string())
        .collect();
    let header = with_header.then_some(&header);
    let mut lines = Vec::new();
    for row in header.into_iter().chain(rows) {
        let cells: Vec<Vec<String>> = columns
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(index, (column, width))| {
                let cell = row.get(index).map(String::as_str).unwrap_or_default();
                cell_lines(cell, column.fit, *width)
            })
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        for line in 0..height {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| pad(cell.get(line).map(String::as_str).unwrap_or(""), *width))
                .collect();
            lines.push(text.join(GAP).trim_end().to_string());
        }
    }
    lines.join("\n")
}

/// A value as a cell: `-` when empty or absent.
pub(crate) fn text(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_string()
    }
}

fn optional(value: Option<&str>) -> String {
    text(value.unwrap_or_default())
}

/// `a,b`, or `(any)` when the list is empty (no restriction).
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(any)".into()
    } else {
        items
            .iter()
            .map(|item| text(item))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `pk_live_…WXYZ`: enough to recognise a key, never enough to use it.
fn masked(key: &Key) -> String {
    format!("{}…{}", text(&key.prefix), text(&key.last4))
}

fn limits(limits: &EffectiveLimits) -> String {
    let enforced = &limits.enforced_by_proxy;
    [
        ("per_minute", enforced.per_minute),
        ("per_hour", enforced.per_hour),
        ("per_day", enforced.per_day),
        ("concurrent", enforced.concurrent),
        ("per_month", limits.per_month),
    ]
    .iter()
    .map(|(field, value)| {
        let value = value.map_or_else(|| "unlimited".to_string(), |value| value.to_string());
        format!("{field}={value}")
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// `active`, `inactive` (revoked) or `expired` (active, but past its expiry), as
/// `list --status` filters them.
fn status(key: &Key, now: DateTime<Utc>) -> &'static str {
    let expired = key
        .expires_at
        .as_deref()
        .and_then(clock::parse)
        .is_some_and(|expiry| expiry <= now);
    match (key.active, expired) {
        (false, _) => "inactive",
        (true, true) => "expired",
        (true, false) => "active",
    }
}

/// How long before `now` an instant was, to the hour (`0h`, `47h`, `12d`, `3y`); `-` for none.
/// The key list has no room for a whole instant.
fn age(instant: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(at) = instant.and_then(clock::parse) else {
        return "-".into();
    };
    let hours = (now - at).num_hours().max(0);
    match hours {
        0..48 => format!("{hours}h"),
        48..24_000 => format!("{}d", hours / 24),
        _ => format!("{}y", hours / (24 * 365)),
    }
}

/// One line per key: what tells keys apart, whether they work and how long ago they were last
/// used (`USED`). Scopes, allowed IPs, expiry
/// and limits are in `show`; the secret's prefix shows the environment.
pub fn key_table(keys: &[Key], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                text(&key.id),
                text(&key.name),
                text(&key.team),
                masked(key),
                status(key, now).to_string(),
                key.plan.as_str().to_string(),
                age(key.last_used_at.as_deref(), now),
            ]
        })
        .collect();
    let columns = [
        column("ID", Fit::Keep),
        column("NAME", Fit::Truncate),
        column("TEAM", Fit::Truncate),
        column("KEY", Fit::Keep),
        column("STATUS", Fit::Keep),
        column("PLAN", Fit::Keep),
        column("USED", Fit::Keep),
    ];
    render(&columns, &rows, true)
}

/// The UTC day of an instant (`2030-01-01`), or `-`; tables have no room for the time.
fn day(instant: Option<&str>) -> String {
    optional(instant.map(|instant| instant.get(..10).unwrap_or(instant)))
}

/// One line per management token (used and expiry by UTC day; `--json` has the instants),
/// never more of its secret than the last four.
pub fn token_table(tokens: &[Token]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                text(&token.id),
                text(&token.name),
                token.role.as_str().to_string(),
                optional(token.team.as_deref()),
                format!("kgt_…{}", text(&token.last4)),
                day(token.last_used_at.as_deref()),
                day(token.expires_at.as_deref()),
            ]
        })
        .collect();
    let columns = [
        column("ID", Fit::Keep),
        column("NAME", Fit::Truncate),
        column("ROLE", Fit::Keep),
        column("TEAM", Fit::Truncate),
        column("TOKEN", Fit::Keep),
        column("USED", Fit::Keep),
        column("EXPIRES", Fit::Keep),
    ];
    render(&columns, &rows, true)
}

/// One line per audit entry; `--json` has the changed fields.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            let fields = entry
                .changes
                .as_object()
                .map(|changes| changes.keys().cloned().collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                text(&entry.at),
                text(&entry.token_name),
                text(&entry.action),
                text(&entry.target),
                text(&fields),
            ]
        })
        .collect();
    let columns = [
        column("AT", Fit::Keep),
        column("BY", Fit::Truncate),
        column("ACTION", Fit::Keep),
        column("TARGET", Fit::Keep),
        column("FIELDS", Fit::Wrap),
    ];
    render(&columns, &rows, true)
}

pub fn key_details(key: &Key) -> String {
    let rows: Vec<Vec<String>> = [
        ("id", text(&key.id)),
        ("name", text(&key.name)),
        ("environment", key.environment.as_str().to_string()),
        ("team", text(&key.team)),
        ("key", masked(key)),
        ("scopes", list(&key.scopes)),
        ("allowed_ips", list(&key.allowed_ips)),
        ("expires_at", optional(key.expires_at.as_deref())),
        ("active", key.active.to_string()),
        ("plan", key.plan.as_str().to_string()),
        ("limits", limits(&key.effective_limits)),
        (
            "quota_exceeded_until",
            optional(key.quota_exceeded_until.as_deref()),
        ),
        ("created_at", text(&key.created_at)),
        ("updated_at", text(&key.updated_at)),
        ("rotated_from", optional(key.rotated_from.as_deref())),
        ("last_used_at", optional(key.last_used_at.as_deref())),
    ]
    .into_iter()
    .map(|(field, value)| vec![format!("{field}:"), value])
    .collect();
    render(
        &[column("", Fit::Keep), column("", Fit::Wrap)],
        &rows,
        false,
    )
}

#[cfg(test)]
mod tests;
