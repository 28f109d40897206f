-- HTTP API sends held for their send_at (store/api.py, Api: scheduled sends).
CREATE TABLE api_scheduled (
    queue_id TEXT PRIMARY KEY,  -- the id the message will have when it is sent
    key_id INTEGER NOT NULL,
    sender_domain TEXT NOT NULL,
    due REAL NOT NULL,
    request TEXT NOT NULL,      -- the message request, as JSON
    idempotency_key TEXT,
    fingerprint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX api_scheduled_due ON api_scheduled (due);
CREATE UNIQUE INDEX api_scheduled_idempotency ON api_scheduled (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
