"""Shared helpers for the benchmarks: a live server with the baseline views, HTTP, statistics, output."""

import contextlib
import hashlib
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from tests.live import LiveServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def live_server(**extra_env):
    """Start the whole stack (daphne + Celery worker) in a temp dir with /bench/ views; stop it after."""
    # tests.live.LiveServer reads the instance types from the settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
    tmp = Path(tempfile.mkdtemp(prefix="dxweb-bench-"))
    env = {"DXWEB_BENCH_VIEWS": "1", "DXWEB_LOG_LEVEL": "WARNING", **extra_env}
    server = LiveServer(tmp, extra_env=env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _children(pid):
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def web_pid(server):
    """The pid of the daphne process under `manage.py serve` (Linux /proc), or None."""
    for pid in _children(server.proc.pid):
        try:
            if b"daphne" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far (0.0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


ENGINE_PROCESSES = {"postgres", "redis-server"}


def engine_cpu_seconds():
    """CPU seconds the machine's PostgreSQL and Redis have used so far: their processes' own, and what
    exited backends left to the postmaster (reaped children's). 0.0 on the embedded engine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, fields = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if comm.split("(", 1)[1] not in ENGINE_PROCESSES:
            continue
        fields = fields.split()
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def busy_share():
    """Start measuring how busy the machine's CPUs are; return a function that gives the share so far."""
    busy0, total0 = _busy_jiffies()

    def share():
        busy1, total1 = _busy_jiffies()
        return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0

    return share


def cpu_jiffies():
    """(user + nice, system + irq + softirq, idle + iowait, total) CPU jiffies of the whole machine so
    far (Linux /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return f[0] + f[1], f[2] + f[5] + f[6], f[3] + (f[4] if len(f) > 4 else 0), sum(f)


def _busy_jiffies():
    """(busy, total) CPU jiffies of the whole machine so far."""
    *_, idle, total = cpu_jiffies()
    return total - idle, total


def settle(max_busy=0.15, window=0.5, timeout=60):
    """Wait until the machine is quiet: less than `max_busy` of its CPUs busy over `window` seconds (at
    most `timeout`); return the seconds waited. A burst of sandboxes leaves the kernel tearing down
    their namespaces for seconds after they exit, which would slow whatever the bench measures next."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        busy0, total0 = _busy_jiffies()
        time.sleep(window)
        busy1, total1 = _busy_jiffies()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < max_busy:
            break
    return time.monotonic() - start


def connect(server, timeout=120):
    parsed = urlparse(server.url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)


def call(conn, method, path, body=b"", headers=None):
    """One request on a keep-alive connection; return (status, body bytes)."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def request(conn, method, path, body=None, headers=None, tries=3):
    """One request on a keep-alive connection, sent again if the connection dropped; return (response, body)."""
    for attempt in range(tries):
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response, response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            if attempt == tries - 1:
                raise


def api(server, path, body=None, token=None):
    """POST to the API; raise unless 200; return the decoded JSON."""
    return server.api(path, body or {}, token=token)


def percentile(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values):
    return statistics.median(values) if values else float("nan")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def git_rev():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "database": os.environ.get("DATABASE_URL", "sqlite (default)").split("@")[-1],
    }


def write_results(name, data):
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_rev(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(headers, rows):
    """Render rows (lists of str) under headers as an aligned text table."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        cells = enumerate(zip(row, widths, strict=True))
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in cells))
    return "\n".join(out)


def verdict(ratio, target):
    return "MET" if ratio >= target else "BELOW"
