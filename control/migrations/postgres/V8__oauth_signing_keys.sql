-- OAuth 2.0 access-token signing keys (docs/security.md, "OAuth 2.0"): each ES256 key pair
-- with its public JWK and its private key sealed with AES-256-GCM under
-- KEYGATE_OAUTH_SEALING_KEY; a key signs from active_from until a newer key does, and is
-- deleted once no token it signed can still be valid.
CREATE TABLE oauth_signing_keys (
    kid            TEXT COLLATE "C" PRIMARY KEY,
    created_at     TEXT COLLATE "C" NOT NULL,
    active_from    TEXT COLLATE "C" NOT NULL,
    public_jwk     TEXT COLLATE "C" NOT NULL,
    sealed_private TEXT COLLATE "C" NOT NULL
);
