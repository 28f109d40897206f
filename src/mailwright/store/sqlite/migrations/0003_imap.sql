-- What an IMAP server needs (store/api.py has the invariants).

-- The parsed structure (BODYSTRUCTURE, ENVELOPE...) of a message, cached once: opaque bytes.
ALTER TABLE messages ADD COLUMN structure BLOB;

-- IMAP4rev1 \Recent: UIDs from recent_uid up are recent for the next session that claims
-- them. What is already there when this migration runs is not recent.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN recent_count INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uidnext;

-- STATUS UNSEEN / DELETED (and RECENT above) without a scan: counters kept by every write.
ALTER TABLE mailboxes ADD COLUMN unseen_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN deleted_count INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET
    unseen_count = (SELECT count(*) FROM placements p WHERE p.mailbox_id = mailboxes.id
                    AND instr(' ' || p.flags || ' ', ' \Seen ') = 0),
    deleted_count = (SELECT count(*) FROM placements p WHERE p.mailbox_id = mailboxes.id
                     AND instr(' ' || p.flags || ' ', ' \Deleted ') > 0);

-- RFC 9051 §6.3.7: a subscription may name a mailbox that does not exist, so it is not a
-- column of mailboxes any more.
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
INSERT INTO subscriptions(account_id, name)
    SELECT account_id, name FROM mailboxes WHERE subscribed;
ALTER TABLE mailboxes DROP COLUMN subscribed;

-- Ids are never reused (SQLite reuses the largest rowid once its row is deleted): a
-- session may hold a message id after another session expunged it, and must get NotFound
-- then, not another message's bytes; likewise a mailbox id of a deleted mailbox.
INSERT INTO counters(name, value) SELECT 'message_id', coalesce(max(id), 0) FROM messages;
INSERT INTO counters(name, value) SELECT 'mailbox_id', coalesce(max(id), 0) FROM mailboxes;
INSERT INTO counters(name, value) SELECT 'account_id', coalesce(max(id), 0) FROM accounts;

-- Deleting a message row makes SQLite check that no placement references it (foreign
-- keys are on): without this index each check scans every placement, so expunging n of
-- N messages cost n × N.
CREATE INDEX placements_message ON placements (message_id);

-- A message's size beside each placement (it never changes): listing a mailbox of 100k
-- messages is then one scan of placements in UID order, not 100k lookups in messages,
-- whose rows hold the inline bodies.
ALTER TABLE placements ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE placements SET size = (SELECT m.size FROM messages m WHERE m.id = placements.message_id);
