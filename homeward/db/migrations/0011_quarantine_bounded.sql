-- Quarantine keeps a bounded prefix of a rejected payload (ingest/quarantine_gate.py):
-- the whole payload's size is kept beside it (its SHA-256 already was).
-- depends: 0010_questionable_readings 0010_rule_state

ALTER TABLE quarantine ADD COLUMN payload_bytes integer;
UPDATE quarantine SET payload_bytes = octet_length(payload);
ALTER TABLE quarantine ALTER COLUMN payload_bytes SET NOT NULL,
    ADD CONSTRAINT quarantine_prefix_within_size CHECK (octet_length(payload) <= payload_bytes);
