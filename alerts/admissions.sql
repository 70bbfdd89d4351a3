-- name: patients_by_nhs_number
SELECT nhs_number, patient_id FROM patients WHERE nhs_number = ANY(%(numbers)s::text[])

-- name: insert_admissions
-- Every row of one file in one statement; an admission already recorded is kept as it was.
INSERT INTO admissions (patient_id, admitted_on, source, imported_by)
SELECT patient_id, admitted_on, %(source)s, %(by)s
FROM unnest(%(patient_id)s::integer[], %(admitted_on)s::date[]) AS r (patient_id, admitted_on)
ON CONFLICT (patient_id, admitted_on) DO NOTHING
RETURNING patient_id
