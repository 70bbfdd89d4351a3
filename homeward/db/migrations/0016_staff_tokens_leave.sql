-- A staff member the organisation file no longer names leaves with their API tokens
-- (a reload of the teams file had failed on the tokens' foreign key).
-- depends: 0015_web_sessions

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_staff_id_fkey;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_staff_id_fkey
    FOREIGN KEY (staff_id) REFERENCES staff (staff_id) ON DELETE CASCADE;
