"""Test-only: ``sparse-probe tasks publish`` that stops dead after the N-th HIT is created.

Usage: ``python tests/publish_then_hang.py N TASKS_DIR [publish options...]``.

Runs the real publish command in this process, with botocore's API call wrapped: once the
N-th ``CreateHITWithHITType`` call has returned (the HIT exists at the endpoint, the ledger has
not yet recorded it), it prints ``HIT_CREATED <n>`` on stdout and sleeps, so that the test can
kill this process with SIGKILL by its pid at exactly that moment. Nothing in the shipped code
knows about it.
"""

from __future__ import annotations

import sys
import time

import botocore.client

MARKER = "HIT_CREATED"


def main() -> None:
    after = int(sys.argv[1])
    args = sys.argv[2:]
    original = botocore.client.BaseClient._make_api_call
    created = 0

    def make_api_call(self, operation_name, api_params):
        nonlocal created
        response = original(self, operation_name, api_params)
        if operation_name == "CreateHITWithHITType":
            created += 1
            if created >= after:
                print(f"{MARKER} {created}", flush=True)
                while True:  # wait here to be killed
                    time.sleep(60)
        return response

    botocore.client.BaseClient._make_api_call = make_api_call
    from tasks.publish_cli import publish

    publish.main(args=args, prog_name="publish")


if __name__ == "__main__":
    main()
