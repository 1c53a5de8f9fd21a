-- OpenID Connect Back-Channel Logout 1.0. A grant remembers the browser session it was made
-- in (the code's sid), so ending that session finds the clients to tell. Deliveries are a
-- queue: one row per (client, ended session), written in the transaction that ends the
-- session; an instance claims due rows (claimed_until) and sends them; a failure is retried
-- with backoff (next_attempt_at) until max attempts, then marked failed. The logout token is
-- signed when sent, never stored.
ALTER TABLE grants ADD COLUMN sid TEXT;
CREATE INDEX grants_sid ON grants (sid) WHERE sid IS NOT NULL;
CREATE TABLE logout_deliveries (
    client_id       TEXT NOT NULL,
    sid             TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    delivered_at    BIGINT,
    failed_at       BIGINT,
    last_error      TEXT,
    PRIMARY KEY (client_id, sid)
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
