-- Invitations to sign up, including the first administrator's setup link. The token is
-- stored only as a pepper digest; an invite is used once.

CREATE TABLE invites (
    token_digest TEXT PRIMARY KEY,
    -- When set, the account must be created with this address.
    email        TEXT,
    is_admin     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    used_by      TEXT
);
