-- Rule configuration per patient (with history), alerts and their append-only events.
-- depends: 0003_timescaledb

-- Effective rules = the care-plan templates of the patient's conditions + overrides.
CREATE TABLE patient_rules (
    patient_id  integer PRIMARY KEY REFERENCES patients (patient_id),
    overrides   jsonb NOT NULL DEFAULT '{}',
    version     integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    reason      text NOT NULL
);

-- Every change: who, when, why, and the values before and after.
CREATE TABLE patient_rules_history (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  integer NOT NULL REFERENCES patients (patient_id),
    version     integer NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL CHECK (length(changed_by) > 0),
    reason      text NOT NULL CHECK (length(reason) > 0),
    previous    jsonb NOT NULL,
    current     jsonb NOT NULL,
    UNIQUE (patient_id, version)
);

-- One clinical concern for one patient. At most one unresolved alert per (patient, rule):
-- a repeat hit updates it. Enforced here, so any number of workers stay correct.
CREATE TABLE alerts (
    alert_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id          integer NOT NULL REFERENCES patients (patient_id),
    rule_id             text NOT NULL,
    kind                text NOT NULL,
    metric              text,
    priority            text NOT NULL CHECK (priority IN ('red', 'amber', 'technical')),
    state               text NOT NULL DEFAULT 'open'
                        CHECK (state IN ('open', 'acknowledged', 'resolved')),
    team_id             text,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    first_measured_at   timestamptz NOT NULL,
    latest_measured_at  timestamptz NOT NULL,
    hit_count           integer NOT NULL DEFAULT 1,
    first_value         double precision,
    latest_value        double precision,
    worst_value         double precision,
    message             text NOT NULL,
    details             jsonb NOT NULL DEFAULT '{}',
    condition_cleared   boolean NOT NULL DEFAULT false,
    acknowledged_at     timestamptz,
    acknowledged_by     text,
    ack_expires_at      timestamptz,
    resolved_at         timestamptz,
    resolved_by         text,
    outcome             text,
    snoozed_until       timestamptz,
    assignee            text,
    policy              jsonb          -- the escalation policy snapshot it was raised with
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, rule_id) WHERE state <> 'resolved';
CREATE INDEX alerts_queue ON alerts (team_id, state, priority, opened_at);

CREATE TABLE alert_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (alert_id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    actor       text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, event_id);

-- Append-only: an alert's story can always be replayed.
CREATE FUNCTION alert_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only';
END $$;
CREATE TRIGGER alert_events_no_change BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_append_only();

-- Late data that would have breached a rule: stored as history, shown for review, never
-- raised as a current alert.
CREATE TABLE late_reviews (
    review_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id   integer NOT NULL REFERENCES patients (patient_id),
    rule_id      text NOT NULL,
    measured_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    value        double precision,
    message      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    reviewed_by  text,
    reviewed_at  timestamptz,
    UNIQUE (patient_id, rule_id, measured_at)
);
