-- RFC 3501 §2.3.1.1: a mailbox name that is deleted and created again (also by removing
-- and re-adding its account, whose id SQLite may reuse) must get a new UIDVALIDITY.
-- The last value handed out is kept here; each new mailbox takes max(last + 1, now).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters(name, value)
    SELECT 'uidvalidity', coalesce(max(uidvalidity), 0) FROM mailboxes;
