-- The HTTP API's suppression list and its signing secrets (store/api.py, Api).

CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,  -- lower case
    reason TEXT NOT NULL,      -- bounce, unsubscribe, manual
    detail TEXT NOT NULL DEFAULT '',
    queue_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);

-- A hard bounce of a message sent through the API suppresses its recipient, in the
-- transaction that records the bounce (a local mailbox that was full is not a hard
-- bounce: it may have room tomorrow).
CREATE TRIGGER suppress_hard_bounces AFTER INSERT ON events
WHEN NEW.type = 'bounced' AND NEW.recipient != ''
    AND coalesce(json_extract(NEW.detail, '$.reply'), '') != 'mailbox full'
    AND EXISTS (SELECT 1 FROM api_sends WHERE queue_id = NEW.queue_id)
BEGIN
    INSERT OR IGNORE INTO suppressions(address, reason, detail, queue_id, created_at)
    VALUES (lower(NEW.recipient), 'bounce',
            substr(coalesce(json_extract(NEW.detail, '$.reply'), ''), 1, 500),
            NEW.queue_id, NEW.time);
END;

-- Secrets the API signs its links with (unsubscribe, tracking), made once per
-- installation so that every process and node signs alike.
CREATE TABLE api_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
