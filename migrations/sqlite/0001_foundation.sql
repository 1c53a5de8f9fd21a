-- Foundation: signing keys, pepper key checks, users, clients.
-- Times are unix seconds; booleans are BIGINT 0/1; JSON is TEXT (portable over sqlx Any).

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    kek_id         TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     BIGINT NOT NULL,
    activates_at   BIGINT NOT NULL
);

-- One row per pepper key id: an HMAC of a fixed label, so a start with the wrong pepper file
-- is refused instead of silently failing every digest comparison.
CREATE TABLE pepper_keys (
    id           TEXT PRIMARY KEY,
    check_digest TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,
    email_verified BIGINT NOT NULL DEFAULT 0,
    name           TEXT,
    password_hash  TEXT,
    is_admin       BIGINT NOT NULL DEFAULT 0,
    disabled_at    BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id     TEXT PRIMARY KEY,
    secret_digest TEXT,
    metadata      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
