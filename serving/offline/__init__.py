"""Offline scoring: any handler module under Apache Beam's RunInference, locally or on Dataflow.

`model_handler` adapts one handler module to Beam's `ModelHandler` contract (load once per
worker process, validate each element, one `predict_batch` per batch); `pipeline` reads
JSON Lines, scores them and writes results and a dead-letter output, as
`flask --app main score` runs it. apache-beam is not a serving dependency: it is pinned in
requirements-beam.txt and installed into its own environment (see docs/offline-scoring.md).
Nothing here imports Flask or a wire protocol.
"""
