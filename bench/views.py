"""Baselines the benchmarks compare the real API and transfer URLs with.

- `bare_json`: the cheapest Django JSON view (no auth, no DB), through the same
  middleware, URL resolver and sync-view thread hop as the API dispatcher.
- `launch_true` POST: a task per job, for bench/jobs.py's naive job system: the request sends a Celery task
  (bench/tasks.py boxed_true) that runs a job-like sandboxed `true` in the server's worker; no
  token, no database, no job; with `"ledger": true`, the same plus the target's bookkeeping on scratch
  tables (bench/ledger.py: the view makes the submit's transaction, the task the worker's); with
  `"python": true`, the sandbox imports dxpy and makes one call instead of running `true` (bench/scatter.py). Mounted
  only with DXWEB_BENCH_VIEWS, as every view here.
- `blob` PUT/GET: the real upload/download minus signing, md5, size checks and
  the database: the request body is streamed to a file in CHUNK pieces, and
  streamed back with an async generator (as projects/transfer.py does; a sync
  iterator would be buffered whole by Django under ASGI).
"""

import asyncio
import json
import os
import re

from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import ledger as book
from .tasks import boxed_true

CHUNK = 1024 * 1024
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@csrf_exempt
def bare_json(request):
    return JsonResponse({"ok": True})


@csrf_exempt
def launch_true(request):
    try:
        body = json.loads(request.body)
        args = (int(body["port"]), str(body["tag"]), str(body["base"]))
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "expected {port, tag, base}"}, status=400)
    if not NAME_RE.match(args[1]) or not str(args[2]).startswith(str(settings.DATA_DIR)):
        return JsonResponse({"error": "bad tag or base"}, status=400)
    ledger = body.get("ledger") is True
    if ledger:  # the submit's share of the target's bookkeeping (bench/ledger.py)
        book.submit(args[1])
    boxed_true.delay(*args, ledger=ledger, python=body.get("python") is True)
    return JsonResponse({"ok": True})


def _path(name):
    directory = settings.DATA_DIR / "bench-put"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


async def _stream(path, size):
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        remaining = size
        while remaining > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


@csrf_exempt
def blob(request, name):
    if not NAME_RE.match(name) or name.startswith("."):
        return JsonResponse({"error": "bad name"}, status=400)
    path = _path(name)
    if request.method == "PUT":
        size = 0
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as out:
            while chunk := request.read(CHUNK):
                out.write(chunk)
                size += len(chunk)
        os.replace(tmp, path)
        return JsonResponse({"size": size})
    if request.method in ("GET", "HEAD"):
        if not path.is_file():
            return JsonResponse({"error": "not found"}, status=404)
        size = path.stat().st_size
        if request.method == "HEAD":
            response = HttpResponse(b"")
        else:
            response = StreamingHttpResponse(_stream(path, size))
        response["Content-Type"] = "application/octet-stream"
        response["Content-Length"] = str(size)
        return response
    if request.method == "DELETE":
        path.unlink(missing_ok=True)
        return JsonResponse({"deleted": True})
    return JsonResponse({"error": "method not allowed"}, status=405)
