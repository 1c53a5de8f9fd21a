-- One audit log for every security-relevant action (issue 16): sign-ins and their failures,
-- passkeys, passwords, sessions, consents, token reuse, clients, users, keys, token exchange,
-- stream-key reveals. Never a secret: details are built from named fields only.
CREATE TABLE audit_events (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    -- e.g. signin.success, client.created (see server/src/audit.rs)
    type       TEXT NOT NULL,
    -- user:<id>, client:<client_id>, admin:<user id>, cli, system
    actor      TEXT NOT NULL,
    -- The user the event is about, if any.
    subject    TEXT,
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    -- success or failure
    outcome    TEXT NOT NULL,
    -- A JSON object.
    details    TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_subject ON audit_events (subject, at);
CREATE INDEX audit_events_client ON audit_events (client_id, at);
CREATE INDEX audit_events_type ON audit_events (type, at);

-- The stream-key audit log folds into it.
INSERT INTO audit_events (id, at, type, actor, subject, client_id, ip, user_agent, outcome, details)
SELECT id, at,
       CASE action WHEN 'stream.reveal' THEN 'stream_key.revealed' ELSE action END,
       actor, owner_id, client_id, ip, NULL, 'success',
       json_build_object('target', target, 'act', act::json)::text
FROM audit_log;
DROP TABLE audit_log;
