"""The care team's web app: sign-in and sessions, the nurse's live queue, the patient
page, the threshold editor and the patient's own view, served as HTML above the API
(docs/web.md). What each person sees is decided by api/access.py, as for the API."""
