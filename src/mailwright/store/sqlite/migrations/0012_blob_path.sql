-- The startup sweep asks which blob files a message still refers to. Without an index
-- that read the whole messages table, inline bodies included: 46 seconds before a
-- server with a 4 GB database would listen. Inline messages (no blob_path) stay out of
-- the index, so a delivery does not write to it.
CREATE INDEX messages_blob_path ON messages (blob_path) WHERE blob_path IS NOT NULL;
