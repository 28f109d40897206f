-- Message templates of the HTTP API (store/api.py, ApiTemplate).
CREATE TABLE api_templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    text TEXT,
    html TEXT,
    sender_domain TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
