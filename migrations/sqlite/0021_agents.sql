-- Clients that register themselves (issue 15). `origin` says where a client came from: NULL
-- for an administrator or an initial access token, 'anonymous' for open registration (shown
-- as unverified, removed when unused), 'document' for a client ID metadata document fetched
-- from its https client_id (the row is a cache of it until `document_expires_at`, and holds
-- the client's grants and consents like any other).
ALTER TABLE clients ADD COLUMN origin TEXT;
ALTER TABLE clients ADD COLUMN document_expires_at BIGINT;

-- RFC 9728 metadata of resource servers that are not configured: whether it names this
-- issuer among its authorization servers, until when that answer is used.
CREATE TABLE discovered_resources (
    resource   TEXT PRIMARY KEY,
    authorized BIGINT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
