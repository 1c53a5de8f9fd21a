-- Links sent by email (password reset; later address verification and sign-in links): the
-- pepper digest of a random token, what it is for, whom, the address it went to. Used once.
CREATE TABLE email_links (
    token_digest TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX email_links_user ON email_links (user_id);

-- An invitation we mailed to its bound address ourselves (open sign-up): creating the account
-- with it proves the address, so the account starts verified.
ALTER TABLE invites ADD COLUMN verifies_email BIGINT NOT NULL DEFAULT 0;
