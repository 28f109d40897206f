-- Webhooks: URLs that receive the events of API sends as signed JSON POSTs
-- (store/api.py, Webhooks, has the invariants).

-- One row per registered URL. ``cursor`` is the last events.id handled (delivered, or
-- read and not wanted): a new webhook starts at the newest event, so it gets only the
-- events recorded after it was made, in id order, and never skips one. ``lease_until``
-- is a time, not a lock: a dispatcher that dies leaves a claim that lapses by itself.
-- The secret is kept as given: the dispatcher needs it to sign every POST.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    types TEXT NOT NULL DEFAULT '',  -- comma list of API event types; empty: every type
    sender_domain TEXT,  -- the creating key's restriction: only that domain's events
    created_at REAL NOT NULL,
    cursor INTEGER NOT NULL,
    next_attempt REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    last_success REAL
);
