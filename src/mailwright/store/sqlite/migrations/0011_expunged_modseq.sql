-- "Which UIDs were expunged since MODSEQ n" (every IMAP session's sync after a command,
-- QRESYNC's VANISHED) by an index on the MODSEQ: by the primary key alone it read every
-- expunge the mailbox ever had, on every command.
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
