-- name: lock_rules
SELECT overrides, version FROM patient_rules WHERE patient_id = %(patient_id)s FOR UPDATE

-- name: upsert_rules
INSERT INTO patient_rules (patient_id, overrides, version, updated_by, reason)
VALUES (%(patient_id)s, %(overrides)s, %(version)s, %(by)s, %(reason)s)
ON CONFLICT (patient_id) DO UPDATE
   SET overrides = EXCLUDED.overrides, version = EXCLUDED.version, updated_at = now(),
       updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason

-- name: insert_history
INSERT INTO patient_rules_history (patient_id, version, changed_by, reason, previous, current)
VALUES (%(patient_id)s, %(version)s, %(by)s, %(reason)s, %(previous)s, %(current)s)

-- name: history
SELECT version, changed_at, changed_by, reason, previous, current
FROM patient_rules_history WHERE patient_id = %(patient_id)s ORDER BY version
