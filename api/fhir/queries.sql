-- name: observations
-- A page of a patient's Observations in the search's order; the keyset (the last
-- entry's sort key) continues a search exactly where its previous page ended. {beyond}
-- is > (ascending) or < (descending), {direction} ASC or DESC.
SELECT patient_id, time, device_id, msg_id, kind, parts, late, received_at
FROM fhir_observations
WHERE patient_id = %(patient_id)s AND time >= %(since)s AND time < %(until)s
  AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
  AND (%(after_time)s::timestamptz IS NULL
       OR (time, device_id, msg_id, kind) {beyond}
          (%(after_time)s::timestamptz, %(after_device)s::text, %(after_msg)s::text,
           %(after_kind)s::text))
ORDER BY time {direction}, device_id {direction}, msg_id {direction}, kind {direction}
LIMIT %(limit)s

-- name: lastn
-- The latest Observations of each kind (Observation/$lastn), newest first.
SELECT patient_id, time, device_id, msg_id, kind, parts, late, received_at
FROM (
    SELECT o.*, row_number() OVER (PARTITION BY kind
                                   ORDER BY time DESC, device_id DESC, msg_id DESC) AS n
    FROM fhir_observations o
    WHERE patient_id = %(patient_id)s
      AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
) latest
WHERE n <= %(most)s
ORDER BY kind, time DESC

-- name: patient_devices
-- Every device bound to the patient, now or before, with its latest binding.
SELECT DISTINCT ON (d.device_id)
       d.device_id, d.kind, d.battery, d.firmware, d.last_msg_at, b.valid_from, b.valid_to
FROM device_bindings b JOIN devices d USING (device_id)
WHERE b.patient_id = %(patient_id)s
ORDER BY d.device_id, b.valid_from DESC

-- name: patient_flags
-- The patient's unresolved alerts, oldest first.
SELECT alert_id, priority, rule_id, message, opened_at
FROM alerts
WHERE patient_id = %(patient_id)s AND state <> 'resolved'
ORDER BY opened_at, alert_id
