-- Hospital admissions, imported from a CSV of NHS number and admission date (alerts/admissions.py),
-- so that outcomes can say whether a patient was admitted within 7 and 30 days of an alert.
-- depends: 0012_device_seq

-- One row per patient and day admitted; importing the same admission again adds nothing.
CREATE TABLE admissions (
    patient_id   integer NOT NULL REFERENCES patients (patient_id),
    admitted_on  date NOT NULL,
    source       text NOT NULL CHECK (length(source) > 0),   -- the file it came from
    imported_by  text NOT NULL CHECK (length(imported_by) > 0),
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, admitted_on)
);
