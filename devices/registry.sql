-- name: insert_patient
INSERT INTO patients (nhs_number, display_name, team_id, conditions, practice, care_coordinator)
VALUES (%(nhs_number)s, %(display_name)s, %(team_id)s, %(conditions)s, %(practice)s,
        %(care_coordinator)s)
ON CONFLICT (nhs_number) DO UPDATE
   SET display_name = EXCLUDED.display_name,
       team_id = COALESCE(EXCLUDED.team_id, patients.team_id),
       practice = COALESCE(EXCLUDED.practice, patients.practice),
       care_coordinator = COALESCE(EXCLUDED.care_coordinator, patients.care_coordinator),
       conditions = COALESCE((SELECT array_agg(DISTINCT c ORDER BY c)
                              FROM unnest(patients.conditions || EXCLUDED.conditions) AS c),
                             '{}')
RETURNING patient_id, nhs_number, display_name, team_id, conditions, practice, care_coordinator,
          (xmax = 0) AS created

-- name: patient_by_nhs
SELECT patient_id, nhs_number, display_name, team_id, conditions, practice, care_coordinator,
       false AS created
FROM patients WHERE nhs_number = %(nhs_number)s

-- name: upsert_device
INSERT INTO devices (device_id, kind, password_hash)
VALUES (%(device_id)s, %(kind)s, %(password_hash)s)
ON CONFLICT (device_id) DO UPDATE
   SET kind = COALESCE(EXCLUDED.kind, devices.kind),
       password_hash = COALESCE(EXCLUDED.password_hash, devices.password_hash)

-- name: current_binding
-- The binding in force at an instant, locked so a concurrent re-binding waits.
SELECT binding_id, patient_id, valid_from
FROM device_bindings
WHERE device_id = %(device_id)s AND tstzrange(valid_from, valid_to) @> %(at)s::timestamptz
FOR UPDATE

-- name: has_bindings
SELECT EXISTS (SELECT 1 FROM device_bindings WHERE device_id = %(device_id)s)

-- name: close_binding
UPDATE device_bindings SET valid_to = %(at)s WHERE binding_id = %(binding_id)s

-- name: insert_binding
INSERT INTO device_bindings (device_id, patient_id, valid_from)
VALUES (%(device_id)s, %(patient_id)s, %(valid_from)s)
RETURNING binding_id

-- name: list_devices
SELECT d.device_id, d.kind, p.nhs_number, b.valid_from, d.last_msg_at, d.battery, d.status
FROM devices d
LEFT JOIN device_bindings b
       ON b.device_id = d.device_id AND tstzrange(b.valid_from, b.valid_to) @> now()
LEFT JOIN patients p ON p.patient_id = b.patient_id
ORDER BY d.device_id

-- name: list_patients
SELECT patient_id, nhs_number, display_name, team_id, conditions, practice, care_coordinator,
       false AS created
FROM patients ORDER BY patient_id

-- name: list_quarantine
SELECT quarantine_id, first_received_at, last_received_at, times_seen, topic, device_id,
       msg_id, reason, detail, payload, payload_bytes, encode(payload_sha256, 'hex') AS payload_sha256,
       security_event
FROM quarantine
WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)
  AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
ORDER BY last_received_at DESC, quarantine_id DESC
LIMIT %(limit)s

-- name: device_credentials
SELECT device_id, password_hash FROM devices WHERE password_hash IS NOT NULL ORDER BY device_id

-- name: known_teams
SELECT team_id FROM teams ORDER BY team_id

-- name: team_of_practice
SELECT team_id FROM teams WHERE %(practice)s = ANY(practices)

-- name: patient_team
SELECT team_id FROM patients WHERE nhs_number = %(nhs_number)s
