-- Registry: patients, devices, bindings with validity periods, quarantine.
-- depends:

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Defence in depth: the application validates NHS numbers, the database refuses bad ones too.
CREATE FUNCTION nhs_number_is_valid(n text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN n ~ '^[0-9]{10}$' THEN (
    SELECT (11 - (sum(substr(n, i, 1)::int * (11 - i)) % 11)) % 11
    FROM generate_series(1, 9) AS i
  ) = substr(n, 10, 1)::int ELSE false END
$$;

CREATE TABLE patients (
    patient_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number    text NOT NULL UNIQUE CHECK (nhs_number_is_valid(nhs_number)),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    team_id       text,
    conditions    text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id     text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    kind          text,
    password_hash text,          -- Mosquitto PBKDF2-SHA512 form, for broker provisioning
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_msg_at   timestamptz,   -- when a message from it last arrived
    battery       real,
    firmware      text,
    status        text,          -- online / offline from its retained status topic
    status_at     timestamptz
);

CREATE TABLE device_bindings (
    binding_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (device_id),
    patient_id  integer NOT NULL REFERENCES patients (patient_id),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,     -- NULL: still bound
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    -- A device belongs to one patient at any instant.
    CONSTRAINT device_bindings_no_overlap EXCLUDE USING gist (
        device_id WITH =,
        tstzrange(valid_from, valid_to) WITH &&
    )
);
CREATE INDEX device_bindings_patient ON device_bindings (patient_id);

-- Every rejected message, never dropped. A redelivered copy bumps times_seen.
CREATE TABLE quarantine (
    quarantine_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    times_seen       integer NOT NULL DEFAULT 1,
    topic            text NOT NULL,
    device_id        text,
    msg_id           text,
    reason           text NOT NULL,
    detail           text NOT NULL,
    payload          bytea NOT NULL,
    payload_sha256   bytea NOT NULL,
    security_event   boolean NOT NULL DEFAULT false,
    CONSTRAINT quarantine_once UNIQUE (topic, payload_sha256)
);
CREATE INDEX quarantine_recent ON quarantine (last_received_at DESC);
