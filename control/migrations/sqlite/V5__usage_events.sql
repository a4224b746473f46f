-- Requests worth looking at (denials and failed upstream answers), as proxies report them:
-- kept `--event-retention-days` and at most a bounded number per key (docs/usage.md).
CREATE TABLE IF NOT EXISTS usage_events (
    seq        INTEGER PRIMARY KEY,
    key_id     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    status     INTEGER NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    client_ip  TEXT,
    request_id TEXT,
    proxy_id   TEXT NOT NULL
) STRICT;
-- A key's events newest first, and the retention's range delete.
CREATE INDEX IF NOT EXISTS usage_events_by_key ON usage_events (key_id, at_ms);
CREATE INDEX IF NOT EXISTS usage_events_by_time ON usage_events (at_ms);
-- Distinct client addresses per key and hour: the non-zero registers of each hour's sketch
-- (contract/src/ip_sketch.rs), merged by maximum; old hours roll up into their day's first hour.
CREATE TABLE IF NOT EXISTS usage_ip_sketch (
    key_id     TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    register   INTEGER NOT NULL,
    value      INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour_start, register)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_ip_sketch_by_hour ON usage_ip_sketch (hour_start);
