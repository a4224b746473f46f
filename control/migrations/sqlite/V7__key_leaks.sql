-- Leaked keys (docs/security.md, "Leaked keys"): the first report of a key found in public, as
-- JSON (when, which scanner, where); NULL for a key never reported.
ALTER TABLE keys ADD COLUMN leak TEXT;
