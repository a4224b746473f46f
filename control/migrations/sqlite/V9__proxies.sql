-- Proxy identity (docs/security.md, "Proxy identity"): every Envoy syncs with a credential of
-- its own (only its SHA-256 kept), obtained with an enrollment token or issued by an admin.
-- Presence (last_seen, snapshot_version, …) is flushed from each replica's memory every few
-- seconds, not written per call.
CREATE TABLE IF NOT EXISTS proxies (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL UNIQUE,
    labels           TEXT NOT NULL,
    version          TEXT NOT NULL,
    credential_hash  TEXT NOT NULL UNIQUE,
    credential_last4 TEXT NOT NULL,
    enrolled_with    TEXT,
    created_at       TEXT NOT NULL,
    enrolled_at      TEXT NOT NULL,
    revoked_at       TEXT,
    last_seen        TEXT,
    snapshot_version INTEGER,
    last_report      TEXT,
    report_failing_since TEXT,
    last_sync        TEXT,
    sync_failing_since TEXT,
    snapshot_read_at TEXT
) STRICT;
-- Shared tokens that may only enroll proxies; only the SHA-256 of each secret is kept.
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL UNIQUE,
    last4      TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    enrolled   INTEGER NOT NULL DEFAULT 0
) STRICT;
-- What each identified proxy reported, per key, hour and code (the same rows as usage_hourly),
-- so an admin can list and discard a revoked proxy's reports. Pruned with usage_hourly.
CREATE TABLE IF NOT EXISTS proxy_usage_hourly (
    proxy_id   TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    code       TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (proxy_id, key_id, hour_start, code)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS proxy_usage_hourly_by_hour ON proxy_usage_hourly (hour_start);
