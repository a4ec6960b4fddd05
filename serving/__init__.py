"""model-serving's core: turns the modules in `handlers/` into an HTTP API.

Import `create_app` from `serving.app`; this package's `__init__` stays empty so that
handlers can import `serving.contract` without pulling in Flask.
"""
