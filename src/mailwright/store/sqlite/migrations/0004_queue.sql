-- The outbound queue and the event log (store/api.py, Queue, has the invariants).

-- One row per remote recipient of a message still to be delivered. Each row holds one
-- reference to its message (messages.refcount counts placements and queue rows).
CREATE TABLE queue (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    queue_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    domain TEXT NOT NULL,
    notify TEXT NOT NULL DEFAULT '',
    orcpt TEXT,
    envid TEXT,
    ret TEXT,
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    eight_bit INTEGER NOT NULL DEFAULT 0,
    prefix BLOB NOT NULL DEFAULT x'',
    received_at INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_reply TEXT NOT NULL DEFAULT '',
    delay_notified INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_due ON queue (next_attempt);
CREATE INDEX queue_message ON queue (queue_id);
CREATE INDEX queue_refs ON queue (message_id);

-- Every step of every message: received, queued, delivered, deferred, bounced ...
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    queue_id TEXT NOT NULL,
    message_id TEXT NOT NULL DEFAULT '',
    recipient TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_queue_id ON events (queue_id);
CREATE INDEX events_message_id ON events (message_id) WHERE message_id != '';
