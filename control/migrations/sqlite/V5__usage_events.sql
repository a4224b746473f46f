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
