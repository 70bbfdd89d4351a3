"""Rule kinds: pure functions of a patient's readings, the rule's configuration and time."""
