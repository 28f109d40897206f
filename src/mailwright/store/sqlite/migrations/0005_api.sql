-- The HTTP sending API: keys, the record of each send, and event queries
-- (store/api.py, Api, has the invariants).

-- A key is shown once, when made; only its SHA-256 is kept (keys are random, 256 bits:
-- a slow password hash would buy nothing and cost every request).
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    sender_domain TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);

-- One row per message sent through the API, written in the same transaction as the
-- message: an Idempotency-Key names at most one message per key.
CREATE TABLE api_sends (
    queue_id TEXT PRIMARY KEY,
    key_id INTEGER NOT NULL,
    sender_domain TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX api_sends_idempotency ON api_sends (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE api_tags (
    tag TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (tag, queue_id)
) WITHOUT ROWID;

-- Event queries by recipient and by type (the id orders and pages them).
CREATE INDEX events_recipient ON events (recipient, id) WHERE recipient != '';
CREATE INDEX events_type ON events (type, id);
