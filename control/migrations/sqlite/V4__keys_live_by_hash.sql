-- Full snapshots in the compact encoding list live keys in ascending hash order, paged by the
-- last hash served (docs/snapshot.md): this index serves each page without sorting. Lowercase
-- hex in SQLite's binary collation sorts as the digests' bytes do.
CREATE INDEX IF NOT EXISTS keys_live_by_hash ON keys (hash) WHERE deleted = 0;
