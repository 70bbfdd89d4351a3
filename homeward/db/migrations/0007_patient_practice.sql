-- The patient's GP practice and named care coordinator (their team comes through the practice).
-- depends: 0006_teams_escalation

ALTER TABLE patients ADD COLUMN practice text;
ALTER TABLE patients ADD COLUMN care_coordinator text;  -- a staff id from the organisation file
