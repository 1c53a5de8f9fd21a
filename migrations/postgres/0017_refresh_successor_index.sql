-- Rotating a refresh token wipes its predecessor's sealed copy of it, found by
-- successor_digest: without an index that was a scan of the whole table per rotation
-- (measured: refresh throughput on PostgreSQL fell by half as the table grew). Only rows
-- still holding a sealed successor are indexed.
CREATE INDEX refresh_tokens_successor ON refresh_tokens (successor_digest) WHERE successor_sealed IS NOT NULL;
