-- Accounts. Emails are stored normalised (trimmed, lower-case) by the service, so the unique index is the
-- whole "email taken" rule; the CHECK keeps a bypassing writer from storing a second spelling.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash): the parameters travel with the hash, so
    -- stronger settings apply to old accounts on their next login (check_needs_rehash).
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (email);
