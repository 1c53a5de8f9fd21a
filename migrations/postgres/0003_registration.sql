-- Dynamic client registration (RFC 7591/7592): initial access tokens, and each registered
-- client's registration access token. Both only as pepper digests.

CREATE TABLE initial_access_tokens (
    token_digest TEXT PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    max_uses     BIGINT,
    uses         BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE clients ADD COLUMN registration_token_digest TEXT;
