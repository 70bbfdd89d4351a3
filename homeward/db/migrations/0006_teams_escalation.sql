-- Organisation (teams, staff, rota, escalation policies), escalation steps, notifications.
-- depends: 0005_binding_lookup

-- Every load of the declarative organisation file, kept whole (idempotent by content).
CREATE TABLE org_versions (
    version     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    sha256      text NOT NULL UNIQUE,
    document    jsonb NOT NULL
);

CREATE TABLE teams (
    team_id        text PRIMARY KEY,
    name           text NOT NULL,
    locality       text NOT NULL,
    practices      text[] NOT NULL DEFAULT '{}',
    out_of_hours   text,                -- team that takes alerts out of hours
    webhook_url    text,
    webhook_secret_env text,            -- the secret itself stays in the environment
    emails         text[] NOT NULL DEFAULT '{}',
    calendar       jsonb NOT NULL       -- working hours, time zone, bank holidays
);

CREATE TABLE staff (
    staff_id   text PRIMARY KEY,
    name       text NOT NULL,
    team_id    text NOT NULL REFERENCES teams (team_id),
    roles      text[] NOT NULL,
    email      text
);

CREATE TABLE rota (
    team_id    text NOT NULL REFERENCES teams (team_id),
    staff_id   text NOT NULL REFERENCES staff (staff_id),
    role       text NOT NULL,
    days       text[] NOT NULL,         -- mon … sun
    starts     time NOT NULL,
    ends       time NOT NULL            -- ends <= starts: through midnight
);

CREATE TABLE escalation_policies (
    team_id        text NOT NULL REFERENCES teams (team_id),
    priority       text NOT NULL CHECK (priority IN ('red', 'amber', 'technical')),
    hours          text NOT NULL CHECK (hours IN ('in', 'out')),
    policy         jsonb NOT NULL,      -- levels, repeat, ack timeout
    PRIMARY KEY (team_id, priority, hours)
);

-- The planned steps of each alert's escalation; fired once (fired_at), never twice.
CREATE TABLE escalation_steps (
    alert_id   bigint NOT NULL REFERENCES alerts (alert_id),
    step_no    integer NOT NULL,
    level      integer NOT NULL,
    due_at     timestamptz NOT NULL,
    targets    jsonb NOT NULL,
    fired_at   timestamptz,
    PRIMARY KEY (alert_id, step_no)
);
CREATE INDEX escalation_steps_due ON escalation_steps (due_at) WHERE fired_at IS NULL;

-- Outgoing notifications: at least once, each with an idempotency key; every attempt kept.
CREATE TABLE notifications (
    notification_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alerts (alert_id),
    channel          text NOT NULL CHECK (channel IN ('webhook', 'email', 'in_app', 'feedback')),
    target           text NOT NULL,
    payload          jsonb NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE notification_attempts (
    attempt_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (notification_id),
    at               timestamptz NOT NULL DEFAULT now(),
    ok               boolean NOT NULL,
    detail           text NOT NULL
);
