-- Stream destinations: the stream key sealed under a key-encryption key (AES-256-GCM, the
-- row id as associated data), with the key id for rotation; never stored in clear.
CREATE TABLE streams (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label      TEXT NOT NULL,
    platform   TEXT NOT NULL,
    rtmp_url   TEXT NOT NULL,
    kek_id     TEXT NOT NULL,
    key_sealed BLOB NOT NULL,
    enabled    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX streams_user ON streams (user_id, created_at);

-- Who read a secret, when: every stream-key reveal and every internal read.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    -- user:<id> or client:<client_id>
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    -- The user whose data it was, and what (a stream id, or all of the user's streams).
    owner_id    TEXT,
    target      TEXT,
    client_id   TEXT,
    ip          TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
