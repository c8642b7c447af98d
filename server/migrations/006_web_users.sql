-- 006: people who log in to the dashboard and their sessions (portable SQL: SQLite and PostgreSQL).
-- web_users: password_hash is argon2id (argon2-cffi); meters is '*' (every meter) or the ids a user may see and
--   change, comma separated (several households on one server).
-- web_sessions: one row per login; token_hash is the SHA-256 of the cookie's value (the cookie alone is never
--   stored), csrf the token a write made with this cookie must echo in X-CSRF-Token; expires_ms moves on use.

CREATE TABLE web_users (
    name            TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    meters          TEXT NOT NULL DEFAULT '*',
    created_ms      BIGINT NOT NULL
);

CREATE TABLE web_sessions (
    token_hash      TEXT PRIMARY KEY,
    user_name       TEXT NOT NULL REFERENCES web_users (name) ON DELETE CASCADE,
    csrf            TEXT NOT NULL,
    expires_ms      BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_name);
