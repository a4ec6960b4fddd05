"""Run gcloud-tasks-emulator on 127.0.0.1 with one queue (started by the tests, in its own venv).

    .venv-tasks-emulator/bin/python tests/jobs/tasks_emulator.py PORT TARGET_PORT QUEUE

The emulator's gRPC server binds every interface (`[::]`); this keeps it on loopback.
App Engine tasks go to http://127.0.0.1:TARGET_PORT; HTTP tasks to their own URL.
"""

import sys
import warnings

warnings.simplefilter("ignore", FutureWarning)  # google-api-core's Python-version notices

import grpc  # noqa: E402
from gcloud_tasks_emulator import server  # noqa: E402

_grpc_server = grpc.server


def _loopback_server(*args, **kwargs):
    instance = _grpc_server(*args, **kwargs)
    add_port = instance.add_insecure_port
    instance.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1"))
    return instance


server.grpc.server = _loopback_server

if __name__ == "__main__":
    port, target_port, queue = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server.create_server("127.0.0.1", port, "127.0.0.1", target_port, [queue], max_retries=-1).run()
