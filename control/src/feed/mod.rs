//! The snapshot feed proxies pull: its versioning rules, a page request and the page read for
//! it, the compact encoding of pages and the cached full snapshot. No HTTP here: the handler
//! (`api/snapshot.rs`) turns these into answers.

pub mod compact_pages;
pub mod delta_cache;
pub mod error;
pub mod full_snapshot;
pub mod pages;
pub mod versions;
