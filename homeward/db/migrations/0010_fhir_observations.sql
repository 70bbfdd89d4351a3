-- FHIR Observations: one per stored message and kind (a blood pressure's systolic and
-- diastolic readings are one panel Observation), read by api/fhir.
-- depends: 0009_api_access

-- Filters on patient_id, time and kind reach the readings scan (they are grouping keys),
-- so a search reads only that patient's rows of that window from readings_patient_time.
CREATE VIEW fhir_observations AS
SELECT r.patient_id, r.time, r.device_id, r.msg_id,
       CASE WHEN r.metric IN ('systolic_bp', 'diastolic_bp') THEN 'blood_pressure'
            ELSE r.metric END AS kind,
       jsonb_agg(jsonb_build_object('metric', r.metric, 'value', r.value, 'flags', r.flags)
                 ORDER BY r.metric) AS parts,
       bool_or(r.late) AS late,
       max(r.received_at) AS received_at
FROM readings r
GROUP BY r.patient_id, r.time, r.device_id, r.msg_id, 5;
