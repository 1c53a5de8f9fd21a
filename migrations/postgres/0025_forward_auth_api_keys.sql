-- Forward-auth sessions and personal API keys (issue 17).
--
-- A forward-auth session is the cookie a reverse proxy's protected hosts carry (on a parent
-- domain); it is bound to the Latchkey session it was minted from by that session's `sid`, so
-- signing out of Latchkey, or the session expiring, ends it. Only the cookie's digest is kept.
CREATE TABLE forward_auth_sessions (
    id_digest  TEXT PRIMARY KEY,
    sid        TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX forward_auth_sessions_sid ON forward_auth_sessions (sid);
CREATE INDEX forward_auth_sessions_expiry ON forward_auth_sessions (expires_at);

-- A personal API key: `lk_<id>_<secret>`; the id is the row's key, the secret is kept as a
-- pepper digest. Deleting the user deletes the keys; disabling the user stops them (checked
-- on every use).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_digest TEXT NOT NULL,
    scope         TEXT NOT NULL,
    resource      TEXT,
    created_by    TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    last_used_ip  TEXT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Service accounts: users that are not people, owned by the administrator who made them.
-- They have no password or passkey and cannot sign in; they hold API keys.
ALTER TABLE users ADD COLUMN service_owner TEXT;
