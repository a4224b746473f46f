-- Team-scoped listings (`GET /v1/keys?team=…`, team tokens) read one team's keys in creation
-- order without scanning every key.
CREATE INDEX IF NOT EXISTS keys_by_team ON keys (team, seq);
