"""Celery baselines for bench/jobs.py: a no-op task that says when it started running, and a task that
runs a job-like sandboxed `true` (or, for bench/scatter.py, a python subjob's least: DXPY_CALL) and says
when it ended (a task per job: bench/views.py launch_true).

Registered only when DXWEB_BENCH_VIEWS is set (dxweb/celery.py autodiscovers `bench`
then), so the server's real worker runs it through the same broker as jobs.run_job.
The start time goes back in one UDP datagram to the benchmark's helper process
(127.0.0.1:<port>): no result backend, no database, no polling.
"""

import dataclasses
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from celery import shared_task
from django.conf import settings

from . import ledger as book

# What a python subjob does at the least: import dxpy, and the one call dxpy.run() makes before its entry
# point (its job's describe), here to the cheapest view the server has (bench/views.py bare_json),
# through the sandbox's API relay as a job's calls go.
DXPY_CALL = "import dxpy; dxpy.DXHTTPRequest('/bench/json', {})"


@shared_task(name="bench.stamp", ignore_result=True)
def stamp(port, tag):
    started = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps({"tag": tag, "started": started}).encode(), ("127.0.0.1", int(port)))


@shared_task(name="bench.boxed_true", ignore_result=True)
def boxed_true(port, tag, base, ledger=False, python=False):
    """A job-like sandboxed `true` (bench/boxes.py) in `base`, then its end time by UDP, as stamp.
    `ledger`: around it, the worker's share of the target's bookkeeping (bench/ledger.py). `python`:
    the sandbox runs the worker's Python on DXPY_CALL instead."""
    from jobs.execution import sandbox

    from .boxes import run_true, true_spec

    def code():
        spec = true_spec(Path(base), tag, sandbox.instance_limits())
        if not python:
            run_true(spec)
            return
        api = urlparse(settings.DXWEB_API_URL)
        env = {
            "DX_APISERVER_PROTOCOL": api.scheme,
            "DX_APISERVER_HOST": api.hostname,
            "DX_APISERVER_PORT": str(api.port or 80),
            "DX_SECURITY_CONTEXT": json.dumps({"auth_token": "unused", "auth_token_type": "Bearer"}),
        }
        run_true(dataclasses.replace(spec, env={**spec.env, **env}), (sys.executable, "-c", DXPY_CALL))

    if ledger:
        book.run(tag, boxed_true.request.hostname or "worker", code)
    else:
        code()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps({"tag": tag, "started": time.time()}).encode(), ("127.0.0.1", int(port)))
