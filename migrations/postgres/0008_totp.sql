-- TOTP authenticators (RFC 6238) and recovery codes.

-- One authenticator per user. The secret is sealed under a key-encryption key (AES-256-GCM,
-- the row's user id as associated data). confirmed_at is NULL while enrolment awaits its
-- first code. last_step is the newest time step accepted: a code is never accepted twice.
CREATE TABLE totp (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kek_id        TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

-- Single-use recovery codes, only as pepper digests bound to their user.
CREATE TABLE recovery_codes (
    code_digest TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);
