"""The platforms the server runs on: detection, the Cloud Functions entry, gunicorn's worker and hardening."""
