-- private_key_jwt (RFC 7523 §3): each client assertion's jti is used once. Rows are kept until
-- the assertion would have expired anyway, then purged.

CREATE TABLE used_assertions (
    jti_key    TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
