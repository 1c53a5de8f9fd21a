-- The delegation behind an audited read: the access token's RFC 8693 `act` claim (JSON), when
-- a service acted for the user.
ALTER TABLE audit_log ADD COLUMN act TEXT;
