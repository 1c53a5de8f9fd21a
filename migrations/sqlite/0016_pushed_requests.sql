-- RFC 9126 pushed authorization requests: the pepper digest of the request_uri's random
-- part, the client that pushed it, its parameters as validated at push time (form-encoded,
-- never a client credential), used once before expires_at.
CREATE TABLE pushed_requests (
    request_digest TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    params         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX pushed_requests_expiry ON pushed_requests (expires_at);
