-- Accounts of other issuers (RFC 8693 subject tokens from `exchange.trusted_issuers`) linked
-- to accounts here: one account per (issuer, subject), fixed on first sight.
CREATE TABLE federated_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);
