-- RFC 9700 §4.14.2 retry grace: a rotated refresh token remembers, for a few seconds, the
-- digest of its successor and the successor itself sealed under the key-encryption key
-- ("<kek id>.<base64url box>", the successor's digest as associated data), so a client whose
-- answer was lost gets the same successor again instead of a family revocation. Housekeeping
-- wipes the sealed successor once the grace is over.
ALTER TABLE refresh_tokens ADD COLUMN successor_digest TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
CREATE INDEX refresh_tokens_sealed ON refresh_tokens (rotated_at) WHERE successor_sealed IS NOT NULL;
