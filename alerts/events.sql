-- name: insert_event
-- An alert's story is append-only: every part that changes an alert adds its event here.
INSERT INTO alert_events (alert_id, kind, actor, data)
VALUES (%(alert_id)s, %(kind)s, %(actor)s, %(data)s)
