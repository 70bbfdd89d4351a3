-- Questionable readings (alerts/quality.py): the classification as a SQL function, so
-- the rule engine's history and the adherence pass's retake check agree with the engine;
-- a retake request is feedback to a device without an alert behind it.
-- depends: 0009_api_access

CREATE FUNCTION homeward_questionable(metric text, flags text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(
        flags && ARRAY['implausible', 'questionable', 'body_movement']
        OR (metric IN ('systolic_bp', 'diastolic_bp') AND flags && ARRAY['cuff_fit', 'irregular_pulse'])
        OR (metric IN ('spo2', 'heart_rate') AND flags && ARRAY['low_perfusion']),
        false)
$$;

-- The adherence pass looks for the newest flagged reading of each patient and metric.
CREATE INDEX readings_flagged ON readings (patient_id, metric, time DESC) WHERE flags IS NOT NULL;

ALTER TABLE notifications ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE notifications ADD CONSTRAINT notifications_alert_or_retake
    CHECK (alert_id IS NOT NULL OR channel = 'feedback');
