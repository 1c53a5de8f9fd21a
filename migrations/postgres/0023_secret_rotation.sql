-- `latchkey client rotate-secret --grace`: the secret it replaced keeps working until
-- previous_secret_expires_at, so a deployment can switch over without downtime.
ALTER TABLE clients ADD COLUMN previous_secret_digest TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;
