-- Passkeys (WebAuthn credentials) and the server-side state of WebAuthn ceremonies.

-- The WebAuthn user handle: random, opaque, set when the user first registers a passkey.
-- A usernameless sign-in finds the user by it.
ALTER TABLE users ADD COLUMN webauthn_handle TEXT;
CREATE UNIQUE INDEX users_webauthn_handle ON users (webauthn_handle);

CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- base64url of the credential id; one credential belongs to one user only.
    credential_id   TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    -- The webauthn-rs Passkey as JSON: public key, algorithm, counter, backup flags.
    credential      TEXT NOT NULL,
    sign_count      BIGINT NOT NULL,
    backup_eligible BIGINT NOT NULL,
    backup_state    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- A registration or authentication in progress: the challenge and what it expects, keyed by
-- the pepper digest of a random id the browser holds. Taken (deleted) exactly once.
CREATE TABLE ceremonies (
    id_digest  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
