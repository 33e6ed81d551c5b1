"""File transfer throughput: `dx upload` / `dx download` vs a plain PUT / GET of the same bytes.

All go to the same daphne process in the same run:

- dx upload:     the unmodified `dx upload --wait` (file/new, 16 MiB parts each with
                 an md5 and a signed PUT URL, sent on dxpy's thread pool, close).
- dxpy upload:   the same library call (dxpy.upload_local_file, wait_on_close) timed
                 inside a process whose imports are done: dx minus its CLI start-up.
- plain PUT:     one PUT of the whole file to /bench/blob/<name> (the body streamed
                 to disk in 1 MiB chunks; no signing, md5 or database).
- dx download:   the unmodified `dx download` (describe, a signed URL, Range GETs,
                 client-side md5 per part), written to a local file.
- dxpy download: dxpy.download_dxfile, timed after its imports.
- plain GET:     one GET of /bench/blob/<name> streamed back and written to a file.

The dx figures are wall clock around the whole command, so they include the CLI's
start-up (Python, dxpy's imports, its argument parser: `dx whoami` is timed as a
reference). daphne's CPU seconds per transfer are read from /proc, as a
server-side figure that the client's work does not blur; the client's (user + system, of
the dx or dxpy process, or of this process for the plain transfers) beside them: on a
machine whose cores client and server share, their sum over the cores bounds how fast a
transfer can be. Every downloaded copy is checked by sha256 (outside the timed region).
The download floor: dxpy's main thread hashes and writes every byte itself, so `dx download`
cannot beat (md5 + write of the same bytes in 16 MiB bodies, timed with no network) + its
start-up (`dx whoami`), however fast the server; plain GET ÷ that is the best ratio possible.
Repetitions rotate which of the three goes first. The client's files live in /dev/shm
when it has room (see client_dir). MB = 2**20 bytes.
"""

import hashlib
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from tests.live import Dx

from .common import (
    ROOT,
    api,
    cpu_seconds,
    live_server,
    median,
    sha256_of,
    table,
    verdict,
    web_pid,
    write_results,
)

TARGET_RATIO = 0.5
MB = 1024 * 1024
CHUNK = 1024 * 1024


def client_dir(size_mb):
    """The client's files (source, downloads) go to a tmpfs when one has room, so that the client's
    local disk (dirty-page write-back of 200 MB downloads) stays out of the figures; the server's
    data directory stays on disk, as in production."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > (3 * size_mb + 256) * MB:
        return str(shm)
    return None


def make_random_file(path, size_mb):
    with open(path, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(MB))
    return sha256_of(path)


def _conn(server):
    parsed = urlparse(server.url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600, blocksize=CHUNK)


def plain_put(server, src, name):
    size = os.path.getsize(src)
    conn = _conn(server)
    try:
        t0 = time.perf_counter()
        with open(src, "rb") as fh:
            conn.request(
                "PUT",
                f"/bench/blob/{name}",
                body=fh,
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            response = conn.getresponse()
            body = response.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    assert response.status == 200, (response.status, body[:300])
    return elapsed


def plain_get(server, name, dest):
    conn = _conn(server)
    try:
        t0 = time.perf_counter()
        conn.request("GET", f"/bench/blob/{name}")
        response = conn.getresponse()
        assert response.status == 200, response.status
        with open(dest, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return elapsed


def plain_delete(server, name):
    conn = _conn(server)
    try:
        conn.request("DELETE", f"/bench/blob/{name}")
        conn.getresponse().read()
    finally:
        conn.close()


def download_floor(src, out, reps=3):
    """The least time dxpy's download loop can take here, whatever the server: its main thread
    hashes (md5) and writes every byte, one 16 MiB body after another, while at most two
    requests are in flight. Timed without any network: the file's bodies are read into memory
    first, then hashed and written to a new file in the client's directory. Median of `reps`."""
    chunk = 16 * MB
    with open(src, "rb") as fh:
        bodies = list(iter(lambda: fh.read(chunk), b""))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        digest = hashlib.md5()
        with open(out, "wb") as fh:
            for body in bodies:
                digest.update(body)
                fh.write(body)
        times.append(time.perf_counter() - t0)
        out.unlink()
    return median(times)


def client_cpu_seconds():
    """CPU seconds of the client side so far: this process (the plain PUT/GET) and its waited-for
    children (dx, bench.dxpy_op)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def dxpy_op(dx, op, path, project, target):
    """Run bench.dxpy_op in a subprocess with dx's environment; return (seconds after imports, id)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.dxpy_op", op, str(path), project, target],
        cwd=ROOT,
        env=dx.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise AssertionError(f"dxpy {op} failed:\n{result.stdout}\n{result.stderr}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["seconds"], data["id"]


def measure(key, dx, server, project, src, name, out, ids):
    """Run one transfer; return its seconds (dxpy_op times itself, after its imports). Uploads fill `ids`."""
    if key == "dx_upload":
        t, res = timed(dx, "upload", str(src), "--brief", "--wait", "--no-progress", "--path", f"{project}:/cli-{name}")
        ids["dx"] = res.stdout.strip()
        return t
    if key == "dxpy_upload":
        t, ids["dxpy"] = dxpy_op(dx, "upload", src, project, f"lib-{name}")
        return t
    if key == "plain_put":
        return plain_put(server, src, name)
    if key == "dx_download":
        return timed(dx, "download", ids["dx"], "-o", str(out), "-f", "--no-progress", project=project)[0]
    if key == "dxpy_download":
        return dxpy_op(dx, "download", out, project, ids["dxpy"])[0]
    return plain_get(server, name, out)


UP = ("dx_upload", "dxpy_upload", "plain_put")
DOWN = ("dx_download", "dxpy_download", "plain_get")


def run(quick=False, sizes=None, reps=None, **_):
    sizes = sizes or ([32] if quick else [200, 16])
    reps = reps or (2 if quick else 5)
    results = {"params": {"sizes_mb": sizes, "reps": reps, "target_ratio": TARGET_RATIO, "mb": MB}, "sizes": []}
    work = Path(tempfile.mkdtemp(prefix="dxweb-bench-xfer-", dir=client_dir(max(sizes))))
    results["client_dir"] = str(work.parent)
    try:
        with live_server() as server:
            project = api(server, "/project/new", {"name": "bench-transfer"})["id"]
            daphne = web_pid(server)
            (work / "dx").mkdir()
            dx = Dx(server, server.admin_token, work / "dx")

            # Warm up: the CLI's imports and .pyc files, the server's code paths, every route.
            warm = work / "warm.bin"
            make_random_file(warm, 1)
            fid = dx(
                "upload", str(warm), "--brief", "--wait", "--no-progress", "--path", f"{project}:/warm.bin"
            ).stdout.strip()
            dx("download", fid, "-o", str(work / "warm.out"), "-f", "--no-progress", project=project)
            _, fid2 = dxpy_op(dx, "upload", warm, project, "warm2.bin")
            dxpy_op(dx, "download", work / "warm.out", project, fid2)
            plain_put(server, warm, "warm.bin")
            plain_get(server, "warm.bin", work / "warm.out")
            results["dx_whoami_s"] = median([timed(dx, "whoami")[0] for _ in range(5)])

            for size in sizes:
                src = work / f"src-{size}.bin"
                digest = make_random_file(src, size)
                out = work / "out.bin"
                times = {key: [] for key in UP + DOWN}
                cpu = {key: 0.0 for key in UP + DOWN}
                client = {key: 0.0 for key in UP + DOWN}
                for rep in range(reps):
                    name = f"r{rep}-{size}.bin"
                    ids = {}
                    shift = rep % 3  # rotate which of the three goes first
                    for group in (UP, DOWN):
                        for key in group[shift:] + group[:shift]:
                            cpu0, client0 = cpu_seconds(daphne), client_cpu_seconds()
                            times[key].append(measure(key, dx, server, project, src, name, out, ids))
                            cpu[key] += cpu_seconds(daphne) - cpu0
                            client[key] += client_cpu_seconds() - client0
                            if group is DOWN:
                                assert sha256_of(out) == digest, f"{key}: sha256 mismatch"
                                out.unlink()
                    assert ids["dx"].startswith("file-") and ids["dxpy"].startswith("file-"), ids
                    # Keep the disk use flat: drop this repetition's copies.
                    api(server, f"/{project}/removeObjects", {"objects": [ids["dx"], ids["dxpy"]]})
                    plain_delete(server, name)
                floor = download_floor(src, out)
                src.unlink()

                # daphne's CPU seconds per transfer (mean over reps: /proc ticks are 10 ms).
                entry = {
                    "size_mb": size,
                    "times_s": times,
                    "download_floor_s": floor,
                    "server_cpu_s": {k: v / reps for k, v in cpu.items()},
                    "client_cpu_s": {k: v / reps for k, v in client.items()},
                    "cpus": os.cpu_count(),
                }
                for key, ts in times.items():
                    entry[f"{key}_mbps"] = size / median(ts)
                    entry[f"{key}_mbps_reps"] = [size / t for t in ts]
                for group in (UP, DOWN):
                    plain = times[group[2]]
                    for key in group[:2]:
                        paired = [p / d for d, p in zip(times[key], plain, strict=True)]
                        entry[f"{key}_ratio"] = median(paired)
                        entry[f"{key}_ratio_reps"] = paired
                        plain_cpu, key_cpu = cpu[group[2]], cpu[key]
                        entry[f"{key}_cpu_ratio"] = plain_cpu / key_cpu if key_cpu else float("nan")
                results["sizes"].append(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


LABELS = {
    "dx_upload": "dx upload (CLI)",
    "dxpy_upload": "dxpy upload (no CLI start)",
    "dx_download": "dx download (CLI)",
    "dxpy_download": "dxpy download (no CLI start)",
}


def report(results):
    rows = []
    for e in results["sizes"]:
        for group in (UP, DOWN):
            plain = group[2]
            for key in group[:2]:
                ratio = e[f"{key}_ratio"]
                rows.append(
                    [
                        f"{LABELS[key]} {e['size_mb']} MB",
                        f"{e[f'{key}_mbps']:.1f}",
                        f"{median(e['times_s'][key]):.2f}",
                        f"{e[f'{plain}_mbps']:.1f}",
                        f"{median(e['times_s'][plain]):.2f}",
                        f"{ratio:.3f}x",
                        f"{e['server_cpu_s'][key]:.2f} / {e['server_cpu_s'][plain]:.2f}",
                        f"{e[f'{key}_cpu_ratio']:.3f}x",
                        f"{e['client_cpu_s'][key]:.2f} / {e['client_cpu_s'][plain]:.2f}" if "client_cpu_s" in e else "",
                        verdict(ratio, TARGET_RATIO) if key.startswith("dx_") else "(info)",
                    ]
                )
    p = results["params"]
    head = (
        f"Transfer: {p['reps']} reps per size, medians; MB = 2**20 bytes; `dx whoami` (CLI start-up + one call) "
        f"takes {results['dx_whoami_s']:.2f}s; client files in {results['client_dir'] or 'the temp dir'}; "
        f"target: dx >= {TARGET_RATIO}x of plain PUT/GET"
    )
    columns = [
        "transfer",
        "MB/s",
        "s",
        "plain MB/s",
        "plain s",
        "ratio",
        "srv CPU s (this/plain)",
        "CPU ratio",
        "client CPU s (this/plain)",
        "target",
    ]
    floors = []
    for e in results["sizes"]:
        if "download_floor_s" not in e:
            continue
        least = e["download_floor_s"] + results["dx_whoami_s"]
        plain = median(e["times_s"]["plain_get"])
        floors.append(
            [
                f"{e['size_mb']} MB",
                f"{e['download_floor_s']:.2f}",
                f"{least:.2f}",
                f"{plain:.2f}",
                f"{plain / least:.3f}x",
            ]
        )
    note = ""
    if floors:
        note = "\n" + table(
            ["dx download floor", "md5+write s", "+ dx start-up s", "plain GET s", "best ratio possible"], floors
        )
    return head + "\n" + table(columns, rows) + note


def main(**opts):
    results = run(**opts)
    print(report(results))
    print(f"results: {write_results('transfer', results)}")
    return results
