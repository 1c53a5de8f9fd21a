-- Failed-attempt counters for sign-in throttling, shared by every instance. Keys are digests
-- (of an address or an account name), never the name itself.

CREATE TABLE throttles (
    throttle_key    TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until   BIGINT NOT NULL
);
