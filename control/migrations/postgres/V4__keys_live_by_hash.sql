-- Full snapshots in the compact encoding list live keys in ascending hash order, paged by the
-- last hash served (docs/snapshot.md): this index serves each page without sorting. The "C"
-- collation sorts lowercase hex as the digests' bytes do, whatever the database's locale.
CREATE INDEX IF NOT EXISTS keys_live_by_hash ON keys (hash COLLATE "C") WHERE deleted = 0;
