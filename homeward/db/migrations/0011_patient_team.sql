-- Every patient belongs to a team of the organisation in force: an alert of a patient with
-- no team, or an unknown one, reaches no queue and never escalates.
-- depends: 0010_rule_state

-- NOT VALID: enforced for every patient enrolled or changed from now on, and a team that
-- still holds patients cannot be deleted; patients enrolled before are listed by
-- ``homeward patient list`` and given a team with ``patient add --team``.
ALTER TABLE patients ADD CONSTRAINT patients_team_known
    FOREIGN KEY (team_id) REFERENCES teams (team_id) NOT VALID;
ALTER TABLE patients ADD CONSTRAINT patients_have_team CHECK (team_id IS NOT NULL) NOT VALID;
