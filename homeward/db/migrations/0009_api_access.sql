-- HTTP API: bearer tokens (stored as SHA-256 only) and the audit log of patient data access.
-- depends: 0008_compact_compression

-- A token speaks for one staff member or one patient. The token itself is shown once when
-- issued; only its hash is kept, so a copy of the database grants nothing.
CREATE TABLE api_tokens (
    token_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256 bytea NOT NULL UNIQUE,
    staff_id     text REFERENCES staff (staff_id),
    patient_id   integer REFERENCES patients (patient_id),
    label        text NOT NULL DEFAULT '',
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CHECK ((staff_id IS NULL) <> (patient_id IS NULL)),
    CHECK (expires_at > issued_at)
);

-- Every access to patient data through the API, granted or refused. Append-only.
CREATE TABLE audit_log (
    audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,          -- staff:<id>, patient:<nhs number> or anonymous
    role        text NOT NULL,          -- staff roles, 'patient', or 'none'
    action      text NOT NULL,          -- e.g. read_readings, read_queue
    patient_id  integer,                -- whose data (NULL for a team-wide read)
    team_id     text,
    allowed     boolean NOT NULL,
    status      integer NOT NULL,       -- the HTTP status answered
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

-- One refusal for every append-only table from here on (alert_events has its own, 0004).
CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- The team queue's order (red, amber, technical; oldest first), unresolved alerts only.
CREATE INDEX alerts_team_queue ON alerts (
    team_id, (CASE priority WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END), opened_at, alert_id
) WHERE state <> 'resolved';
