-- Rule state shared by every worker: a per-patient version locked by each batch, and the
-- readings whose rules failed, kept for re-evaluation.
-- depends: 0009_api_access

-- Every batch that evaluates a patient's readings locks the patient's row (in patient id
-- order, so two workers never deadlock) and bumps ``seq`` in the batch's transaction. A
-- worker whose in-memory window was built at another ``seq`` reloads it from the database
-- first: another worker moved the patient on.
CREATE TABLE patient_rule_state (
    patient_id  integer PRIMARY KEY REFERENCES patients (patient_id),
    seq         bigint NOT NULL DEFAULT 0
);
INSERT INTO patient_rule_state (patient_id) SELECT patient_id FROM patients;

CREATE FUNCTION patient_rule_state_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO patient_rule_state (patient_id) VALUES (NEW.patient_id)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER patients_rule_state AFTER INSERT ON patients
    FOR EACH ROW EXECUTE FUNCTION patient_rule_state_row();

-- Readings stored while the rule stage failed for their patient: evaluated again with the
-- patient's next batch (and deleted then); while any is here /health says rules degraded.
CREATE TABLE rule_backlog (
    device_id   text NOT NULL,
    msg_id      text NOT NULL,
    metric      text NOT NULL,
    time        timestamptz NOT NULL,
    patient_id  integer NOT NULL REFERENCES patients (patient_id),
    failed_at   timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 1,
    error       text NOT NULL,
    PRIMARY KEY (device_id, msg_id, metric, time)
);
CREATE INDEX rule_backlog_patient ON rule_backlog (patient_id);
