//! A snapshot page as the filter reads it, in either encoding: JSON (`contract::snapshot`) or
//! compact binary (`contract::compact`), told apart by the first bytes so that a team's own
//! JSON backend keeps working whatever the filter asks for. Both come out as the same
//! `SnapshotPage`, which `contract::record::validate_page` checks with one set of rules.

use std::fmt;

use serde_json::value::RawValue;

use crate::compact;
use crate::snapshot::PageText;

/// A page's own fields, parsed; its records are kept as they came (JSON text or compact bytes)
/// and checked one by one by `validate_page`, so one bad record is quarantined alone.
/// Borrows from the response body.
#[derive(Debug)]
pub struct SnapshotPage<'a> {
    pub version: u64,
    pub epoch: String,
    pub full: bool,
    pub since: u64,
    pub next_cursor: Option<String>,
    /// For a full snapshot, the keys in the whole snapshot as the server counted them (to size
    /// the store before writing); 0 when unknown, which JSON pages always are.
    pub total_keys: u64,
    pub(crate) body: Body<'a>,
}

/// The records and deletions of a page, in the encoding they came in.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    Json {
        keys: Vec<&'a RawValue>,
        deleted: Vec<String>,
    },
    Compact(compact::Page<'a>),
}

/// Why a page was rejected before any record was looked at.
#[derive(Debug)]
pub enum PageError {
    Json(serde_json::Error),
    Compact(compact::DecodeError),
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Json(error) => write!(f, "{error}"),
            PageError::Compact(error) => write!(f, "{error}"),
        }
    }
}

impl<'a> SnapshotPage<'a> {
    /// Parses a page in whichever encoding it is (`compact::MAGIC` first, JSON otherwise); only
    /// structural damage is an error here.
    pub fn parse(bytes: &'a [u8]) -> Result<SnapshotPage<'a>, PageError> {
        if compact::is_compact(bytes) {
            let page = compact::decode_page(bytes).map_err(PageError::Compact)?;
            let header = page.header.clone();
            return Ok(SnapshotPage {
                version: header.version,
                epoch: header.epoch,
                full: header.full,
                since: header.since,
                next_cursor: header.next_cursor,
                total_keys: header.total_keys,
                body: Body::Compact(page),
            });
        }
        let text = PageText::parse(bytes).map_err(PageError::Json)?;
        Ok(SnapshotPage {
            version: text.version,
            epoch: text.epoch,
            full: text.full,
            since: text.since,
            next_cursor: text.next_cursor,
            total_keys: 0,
            body: Body::Json {
                keys: text.keys,
                deleted: text.deleted,
            },
        })
    }

    /// How many key records the page carries (valid or not).
    pub fn record_count(&self) -> usize {
        match &self.body {
            Body::Json { keys, .. } => keys.len(),
            Body::Compact(page) => page.records.len(),
        }
    }

    /// How many deletions the page carries.
    pub fn deleted_count(&self) -> usize {
        match &self.body {
            Body::Json { deleted, .. } => deleted.len(),
            Body::Compact(page) => page.deleted().len(),
        }
    }
}
