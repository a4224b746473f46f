-- Fleet-wide rate limits: the same tables as PostgreSQL's V3. A single control service on
-- SQLite keeps the fleet's counts in memory (control/src/fleet/memory.rs), so these stay empty
-- there; they exist so both backends share one schema version (and the unit tests run the
-- database code on SQLite). See migrations/postgres/V3__fleet_counts.sql for the columns.
CREATE TABLE IF NOT EXISTS fleet_counts (
    key_tag   TEXT NOT NULL,
    win       INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    proxy     TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (key_tag, win, bucket_ms, bucket, proxy)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_counts_by_bucket ON fleet_counts (win, bucket_ms, bucket);
CREATE TABLE IF NOT EXISTS fleet_limits (
    key_tag      TEXT PRIMARY KEY,
    per_minute   INTEGER,
    per_hour     INTEGER,
    per_day      INTEGER,
    hot_until_ms INTEGER NOT NULL,
    seen_ms      INTEGER NOT NULL,
    sole_proxy   TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_limits_by_hot_until ON fleet_limits (hot_until_ms);
