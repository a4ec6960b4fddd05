"""Load benchmarks: this project under gunicorn against a tutorial-style baseline app."""
