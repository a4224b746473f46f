-- Keygate's schema on SQLite, version 1: the tables as they stood when versioned migrations
-- began. `IF NOT EXISTS` throughout, because databases made before then already hold them
-- (see `adopt_unversioned` in src/store/sqlite.rs).
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value ANY NOT NULL
) STRICT;
-- The change feed's version: every write transaction locks this row first (see postgres.rs).
INSERT INTO meta (name, value) VALUES ('version', 0) ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS keys (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    hash             TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    last4            TEXT NOT NULL,
    name             TEXT NOT NULL,
    environment      TEXT NOT NULL,
    team             TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    allowed_ips      TEXT NOT NULL,
    expires_at       TEXT,
    active           INTEGER NOT NULL,
    plan             TEXT NOT NULL,
    limit_per_minute INTEGER,
    limit_per_hour   INTEGER,
    limit_per_day    INTEGER,
    limit_concurrent INTEGER,
    limit_per_month  INTEGER,
    quota_exceeded_until TEXT,
    last_used_at     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    rotated_from     TEXT,
    deleted          INTEGER NOT NULL DEFAULT 0,
    updated_version  INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keys_by_updated_version ON keys (updated_version);
-- One row per key, hour and outcome: `code` is 'ALLOWED' or a denial code. Rows rather than a
-- column per code because proxies may report codes we do not know yet, and most hours have no
-- denials at all, so zero counts take no space. `hour_start` is Unix seconds (UTC), which
-- makes day and month sums plain range scans of the primary key.
CREATE TABLE IF NOT EXISTS usage_hourly (
    key_id     TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    code       TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour_start, code)
) STRICT, WITHOUT ROWID;
-- For pruning and for reads across all keys, which scan by hour rather than by key.
CREATE INDEX IF NOT EXISTS usage_hourly_by_hour ON usage_hourly (hour_start);
-- Hours older than the usage retention, rolled up into UTC days (`day_start`, Unix seconds).
CREATE TABLE IF NOT EXISTS usage_daily (
    key_id    TEXT NOT NULL,
    day_start INTEGER NOT NULL,
    code      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (key_id, day_start, code)
) STRICT, WITHOUT ROWID;
-- Usage batches already counted, so a retried batch is not counted twice.
CREATE TABLE IF NOT EXISTS usage_batches (
    batch_id     TEXT PRIMARY KEY,
    proxy_id     TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    accepted     INTEGER NOT NULL,
    unknown_keys INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS usage_batches_by_received_at ON usage_batches (received_at);
-- Management tokens for the admin API; only the SHA-256 (hex) of each secret is kept.
CREATE TABLE IF NOT EXISTS tokens (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    hash         TEXT NOT NULL UNIQUE,
    last4        TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    team         TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT,
    rotated_from TEXT
) STRICT;
-- Every change made through the admin API, written in the transaction that makes it.
-- `team` is the team of what was changed, so team tokens read only their team's entries.
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    token_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    team       TEXT,
    changes    TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_log_by_target ON audit_log (target, seq);
-- The plans keys refer to by name; seeded with the four published plans when created.
CREATE TABLE IF NOT EXISTS plans (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    per_minute  INTEGER,
    per_hour    INTEGER,
    per_day     INTEGER,
    per_month   INTEGER,
    concurrent  INTEGER,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
