"""Asynchronous jobs: `202 Task Scheduled`, poll `GET /v1/jobs/<id>`, results kept in a database.

The pieces, each in its own module:

- `records`: a job's fields, states and its public JSON document;
- `store`: the `JobStore` protocol every store implements (claims with leases, exactly-once
  terminal transitions, cancel, idempotency keys, webhook bookkeeping, retention purge);
- `sql_store`: SQLite (the embedded default) and PostgreSQL through SQLAlchemy;
- `firestore_store`: Firestore, the serverless store;
- `runner`: runs one claimed job through `Inference`, with a lease heartbeat, within the
  time budget requests share (its own timeout);
- `pool`: the in-process dispatcher (threads in each gunicorn worker that claim and run jobs);
- `cloud_tasks`: the Cloud Tasks dispatcher and the proof a caller is the queue;
- `webhooks`: the SSRF-safe completion callback;
- `service`: `JobService`, which the routes use, and `init_jobs(app)`;
- `routes`: the HTTP API (whether a request becomes a job is decided in serving/protocols/native/dispatch.py).
"""
