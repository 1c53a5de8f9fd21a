-- RFC 8707 at the authorization endpoint: the resource an authorization request named, kept
-- with its code and with the refresh tokens of its grant, so every access token of the grant
-- has that audience unless a token request narrows it to the same one.
ALTER TABLE authorization_codes ADD COLUMN resource TEXT;
ALTER TABLE refresh_tokens ADD COLUMN resource TEXT;
