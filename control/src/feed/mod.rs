//! The snapshot feed proxies pull: its versioning rules and the cached full snapshot.

pub mod full_snapshot;
pub mod versions;
