-- Links sent by email (password reset, address verification, sign-in links): the
-- pepper digest of a random token, what it is for, whom, the address it went to. Used once.
CREATE TABLE email_links (
    token_digest TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    -- A sign-in link: the authorization request it continues (form-encoded), if any.
    request      TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX email_links_user ON email_links (user_id);

-- Where an invitation came from: 'cli' (latchkey invite create), 'mail' (open sign-up: we
-- mailed it to its bound address, so using it proves the address and the account starts
-- verified) or 'setup' (the first administrator's setup link, replaced at each start).
ALTER TABLE invites ADD COLUMN origin TEXT NOT NULL DEFAULT 'cli';
-- Before this, the setup link was the unused administrator invitation without an address; a
-- new start replaces it, as it did.
UPDATE invites SET origin = 'setup' WHERE is_admin = 1 AND used_at IS NULL AND email IS NULL;
