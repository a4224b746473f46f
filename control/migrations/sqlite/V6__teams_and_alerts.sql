-- Teams as data (docs/teams.md): a team may carry a plan and quotas shared by all its keys.
-- Every team string keys and tokens already name becomes a team, created when its first key or
-- token was.
CREATE TABLE IF NOT EXISTS teams (
    name       TEXT NOT NULL PRIMARY KEY,
    plan       TEXT,
    per_day    INTEGER,
    per_month  INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
INSERT INTO teams (name, created_at, updated_at)
SELECT team, MIN(created_at), MIN(created_at) FROM (
    SELECT team, created_at FROM keys WHERE team <> ''
    UNION ALL
    SELECT team, created_at FROM tokens WHERE team IS NOT NULL AND team <> ''
) AS named
GROUP BY team;
-- The alert sweep reads the keys expiring soon (and just expired) without scanning every key.
CREATE INDEX IF NOT EXISTS keys_by_expiry ON keys (expires_at);
-- ... and leaves out keys rotated out (their expiry is the rotation's grace, not news).
CREATE INDEX IF NOT EXISTS keys_by_rotated_from ON keys (rotated_from);
-- Webhook endpoints (docs/webhooks.md). `secret` signs deliveries; `previous_secret` still
-- signs beside it until `previous_secret_until` after a rotation.
CREATE TABLE IF NOT EXISTS webhooks (
    seq                   INTEGER PRIMARY KEY,
    id                    TEXT NOT NULL UNIQUE,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL,
    events                TEXT NOT NULL,
    team                  TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    enabled               INTEGER NOT NULL,
    disabled_reason       TEXT,
    failing_since         TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
) STRICT;
-- Every alert raised, once per occurrence: `occurrence` names it (e.g. a key's daily quota at
-- 80 % on one day), so a second replica or a second evaluation cannot raise it again.
CREATE TABLE IF NOT EXISTS alert_events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    occurrence TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    team       TEXT,
    at         TEXT NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS alert_events_by_at ON alert_events (at);
-- The outbox: one row per event and endpoint, written in the transaction that raised the event.
-- A replica leases a due row (`lease_until_ms`) before sending it, so one replica delivers it;
-- a lease left by a replica that died lapses and another sends it again.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq             INTEGER PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    last_attempt_at TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (webhook_id, event_id)
) STRICT;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
-- The retention's delete of old events' deliveries.
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_event ON webhook_deliveries (event_id);
-- Rate-limit refusals per key and minute of arrival, for `ratelimit.refusals` (5 minutes kept).
CREATE TABLE IF NOT EXISTS alert_refusals (
    key_id       TEXT NOT NULL,
    minute_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute_start)
) STRICT;
