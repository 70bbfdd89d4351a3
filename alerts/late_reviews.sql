-- name: list_reviews
-- Late readings that would have breached a rule (alerts/store.sql writes them), oldest
-- measurement first; open ones (reviewed_at NULL) unless asked otherwise.
SELECT r.review_id, r.patient_id, p.nhs_number, p.display_name, p.team_id, r.rule_id,
       r.measured_at, r.received_at, r.value, r.message, r.created_at,
       r.reviewed_by, r.reviewed_at, r.review_note
FROM late_reviews r JOIN patients p USING (patient_id)
WHERE (%(team)s::text IS NULL OR p.team_id = %(team)s)
  AND (%(nhs_number)s::text IS NULL OR p.nhs_number = %(nhs_number)s)
  AND (%(state)s::text IS NULL
       OR (%(state)s = 'open' AND r.reviewed_at IS NULL)
       OR (%(state)s = 'closed' AND r.reviewed_at IS NOT NULL))
ORDER BY r.measured_at, r.review_id
LIMIT %(limit)s

-- name: close_review
-- Closed once (a trigger refuses a second close and any other change, migration 0011).
UPDATE late_reviews
SET reviewed_by = %(by)s, reviewed_at = %(now)s, review_note = %(note)s
WHERE review_id = %(review_id)s AND reviewed_at IS NULL
RETURNING review_id, patient_id, rule_id, measured_at, reviewed_by, reviewed_at, review_note

-- name: review_state
SELECT r.review_id, r.patient_id, r.reviewed_at, p.team_id
FROM late_reviews r JOIN patients p USING (patient_id)
WHERE r.review_id = %(review_id)s
