-- RFC 8628 device authorization: the device code and the user code, both only as pepper
-- digests; the user's answer; polling state. Consumed once, when tokens are issued.
CREATE TABLE device_codes (
    device_code_digest TEXT PRIMARY KEY,
    user_code_digest   TEXT NOT NULL UNIQUE,
    client_id          TEXT NOT NULL,
    scope              TEXT NOT NULL,
    -- pending, approved or denied
    status             TEXT NOT NULL,
    user_id            TEXT REFERENCES users (id) ON DELETE CASCADE,
    -- How the approving user signed in (JSON: sid, auth_time, amr, acr).
    authn              TEXT,
    interval_secs      BIGINT NOT NULL,
    last_polled_at     BIGINT,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    consumed_at        BIGINT
);

-- A device that completed the device flow: its grant (refresh tokens) and where it was seen.
CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX devices_user ON devices (user_id);
CREATE INDEX devices_grant ON devices (grant_id);
