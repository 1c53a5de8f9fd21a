-- RFC 9449: the key a code is bound to (`dpop_jkt` at /authorize, or the DPoP proof at /par),
-- and the key a public client's refresh tokens are bound to (the proof of the token request
-- that issued the family; rotation keeps it). RFC 7638 thumbprints, public values.
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;
