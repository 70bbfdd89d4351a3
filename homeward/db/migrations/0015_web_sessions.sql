-- The web app: passwords (argon2 hashes), cookie sessions and the sign-in attempts the
-- rate limit counts.
-- depends: 0014_alert_lifecycle

-- Staff are keyed by their id in the organisation file without a foreign key: reloading
-- the file replaces the staff rows, and a password outlives that. A person no longer in
-- the file cannot sign in (the session query joins staff).
CREATE TABLE web_credentials (
    credential_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staff_id       text UNIQUE,
    patient_id     integer UNIQUE REFERENCES patients (patient_id),
    password_hash  text NOT NULL,          -- argon2id, PHC string (salt and cost inside)
    set_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((staff_id IS NULL) <> (patient_id IS NULL))
);

-- A signed-in browser. Only the SHA-256 of the cookie's value is kept. A session ends at
-- sign-out, after idle_s without a request, or at expires_at (absolute), whichever first.
CREATE TABLE web_sessions (
    session_sha256  bytea PRIMARY KEY,
    staff_id        text,
    patient_id      integer REFERENCES patients (patient_id),
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    ended_why       text,
    CHECK ((staff_id IS NULL) <> (patient_id IS NULL))
);
CREATE INDEX web_sessions_staff ON web_sessions (staff_id) WHERE ended_at IS NULL;

-- Every sign-in attempt by user name (the rate limit counts the recent failures).
CREATE TABLE sign_in_attempts (
    at        timestamptz NOT NULL,
    username  text NOT NULL,
    remote    text,
    ok        boolean NOT NULL
);
CREATE INDEX sign_in_attempts_recent ON sign_in_attempts (username, at);
