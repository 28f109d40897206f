-- Per-key sending limits of the HTTP API (store/api.py, ApiKey) and what they count.
ALTER TABLE api_keys ADD COLUMN daily_quota INTEGER;  -- recipients per UTC day; NULL: none
ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;   -- messages per second; NULL: none
ALTER TABLE api_sends ADD COLUMN recipients INTEGER NOT NULL DEFAULT 0;
CREATE INDEX api_sends_key_time ON api_sends (key_id, created_at);
