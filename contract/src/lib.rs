//! Every rule and message shared by the filter and the control service, defined once here and
//! used by both sides: the control service validates what it stores with these functions and
//! the filter validates what it loads with the same ones, so a record one side accepts can
//! never be one the other side rejects (a mismatch here once froze every Envoy's sync).
//!
//! - `fields`: rules for one field of a key record (names, identifiers, scopes, allowlists,
//!   limits, the snapshot epoch).
//! - `record`: a snapshot record checked into what the filter stores, and a page of them, with
//!   bad records quarantined one by one.
//! - `usage`: the usage report messages (`POST /v1/usage`), read tolerantly; `latency`: the
//!   duration histogram they carry.
//! - `ip_sketch`: distinct client addresses per key and hour, as a mergeable sketch.
//! - `fleet`: the fleet-wide rate-limit sync messages (`POST /v1/ratelimits/sync`).
//! - `snapshot`: the snapshot page messages in JSON; `compact`: the same in the compact binary
//!   encoding; `page`: a page as the filter reads it in either; `timefmt`: the instants they
//!   carry.
//! - `key_hash`: how a secret becomes the hash both sides key it by; `key_format`: the shape of
//!   a key and its checksum, which the filter checks before hashing.
//! - `access_token`: the claims of an OAuth 2.0 access token the control service signs and the
//!   filter reads back from Envoy's `jwt_authn`.
//!
//! - `enrollment`: how a proxy obtains its own credential (`POST /v1/proxies/enroll`).
//!
//! - `stored_key`: the key a checked record becomes, as the filter keeps it.
//! - `reader`: bounds-checked reads of every binary format (compact pages here; the filter's
//!   store records and rate-limit slots too).
//!
//! A crate of its own so that the control service links the rules and not the filter: it
//! depends on no proxy-wasm and no host calls.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access_token;
pub mod compact;
pub mod enrollment;
pub mod fields;
pub mod fleet;
pub mod ip_sketch;
pub mod key_format;
pub mod key_hash;
pub mod latency;
pub mod page;
pub mod reader;
pub mod record;
pub mod snapshot;
pub mod stored_key;
pub mod timefmt;
pub mod usage;

pub use fields::FieldError;
