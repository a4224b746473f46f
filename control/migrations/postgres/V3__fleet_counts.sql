-- Fleet-wide rate limits (`POST /v1/ratelimits/sync`, control/src/fleet/database.rs): what each
-- Envoy (`proxy`) has admitted of each limited key (`key_tag`, contract::fleet::key_tag) per
-- window (`win`: 0 minute, 1 hour, 2 day) and bucket (`bucket`, an absolute index of width
-- `bucket_ms`). Counts are absolute and only ever raised, so a retried sync changes nothing.
-- Shared by every replica, so Envoys syncing with different replicas see each other. Rows older
-- than their window are deleted as syncs go.
CREATE TABLE fleet_counts (
    key_tag   TEXT COLLATE "C" NOT NULL,
    win       BIGINT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    proxy     TEXT COLLATE "C" NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (key_tag, win, bucket_ms, bucket, proxy)
);
-- For forgetting old buckets: a range delete per window.
CREATE INDEX fleet_counts_by_bucket ON fleet_counts (win, bucket_ms, bucket);
-- Each key's limits as last reported (NULL: none in that window), until when it may be hot
-- (fleet-wide at least half a limit; answered to every Envoy), when an Envoy last sent it
-- (Unix ms, the control service's clock), and the one proxy that ever sent it (NULL once a
-- second one has): such a key's counts need not be read back to answer that proxy.
CREATE TABLE fleet_limits (
    key_tag      TEXT COLLATE "C" PRIMARY KEY,
    per_minute   BIGINT,
    per_hour     BIGINT,
    per_day      BIGINT,
    hot_until_ms BIGINT NOT NULL,
    seen_ms      BIGINT NOT NULL,
    sole_proxy   TEXT COLLATE "C"
);
CREATE INDEX fleet_limits_by_hot_until ON fleet_limits (hot_until_ms);
