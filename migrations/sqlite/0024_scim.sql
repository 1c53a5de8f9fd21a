-- SCIM 2.0 provisioning (RFC 7643/7644, issue 16): the identity provider's id for a user,
-- groups with members (released as the `groups` claim), and the long-lived bearer
-- credentials provisioning clients use (only their pepper digest is stored).
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE INDEX users_external_id ON users (external_id);

CREATE TABLE scim_groups (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL UNIQUE,
    external_id  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user ON scim_group_members (user_id);

CREATE TABLE scim_tokens (
    token_digest TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
