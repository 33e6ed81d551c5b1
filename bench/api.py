"""API throughput and latency: authenticated describe calls vs a bare Django JSON view.

All three targets are served by the same daphne process in the same run, hit by
the same client (one keep-alive http.client connection per worker thread) at the
same concurrency, with the same request shape (POST, JSON body, Bearer header):

- bare:     POST /bench/json               (no auth, no DB: the framework floor)
- file:     POST /file-xxxx/describe       (token lookup, permission check, describe)
- project:  POST /project-xxxx/describe    (token lookup, permission check, describe)

Each concurrency level is warmed up, then measured in several rounds; within a
round the targets run back to back in a rotated order, so noise on this shared
machine hits all of them. Reported: median req/s over rounds, p50/p99 latency
over all requests, and the ratio target/bare (median of the per-round ratios).
"""

import hashlib
import json
import threading
import time
from urllib.parse import urlparse

from .common import (
    api,
    call,
    connect,
    cpu_seconds,
    live_server,
    median,
    percentile,
    table,
    verdict,
    web_pid,
    write_results,
)

TARGET_RATIO = 0.5


def setup(server):
    """Create a project holding one small closed file; return {name: (path, body bytes)}."""
    token = server.admin_token
    project = api(server, "/project/new", {"name": "bench-api"})["id"]
    file_id = api(server, "/file/new", {"project": project, "name": "small.txt"})["id"]
    payload = b"dxweb bench\n" * 100
    md5 = hashlib.md5(payload).hexdigest()
    url = api(server, f"/{file_id}/upload", {"index": 1, "size": len(payload), "md5": md5})["url"]
    conn = connect(server)
    status, _ = call(conn, "PUT", urlparse(url).path, payload, {"Content-Length": str(len(payload))})
    conn.close()
    assert status == 200, status
    api(server, f"/{file_id}/close", {})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    targets = {
        "bare": ("/bench/json", b"{}"),
        "file": (f"/{file_id}/describe", json.dumps({"project": project}).encode()),
        "project": (f"/{project}/describe", b"{}"),
    }
    expect = {"bare": None, "file": file_id, "project": project}
    return targets, headers, expect


def check(server, targets, headers, expect):
    conn = connect(server)
    for name, (path, body) in targets.items():
        status, data = call(conn, "POST", path, body, headers)
        assert status == 200, (name, status, data[:300])
        if expect[name]:
            assert json.loads(data)["id"] == expect[name], (name, data[:300])
    conn.close()


def load(server, path, body, headers, concurrency, duration, conns):
    """Hit one path from `concurrency` threads for `duration` s; return (requests, elapsed, latencies, errors)."""
    latencies = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    ends = [0.0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    shared = {}

    def worker(i):
        conn, lat = conns[i], latencies[i]
        start_gate.wait()
        deadline = shared["deadline"]
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= deadline:
                break
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[i] += 1
            except OSError:
                errors[i] += 1
                conn.close()  # http.client reconnects on the next request
                continue
            lat.append(perf() - t0)
        ends[i] = perf()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    begin = time.perf_counter()
    shared["deadline"] = begin + duration
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = max(ends) - begin
    flat = [x for lat in latencies for x in lat]
    return len(flat), elapsed, flat, sum(errors)


def run(quick=False, concurrency=(1, 8), rounds=None, duration=None, warmup=None, **_):
    rounds = rounds or (2 if quick else 7)
    duration = duration or (0.75 if quick else 1.5)
    warmup = warmup or (0.5 if quick else 1.5)
    results = {
        "params": {
            "rounds": rounds,
            "seconds_per_target_per_round": duration,
            "warmup_seconds": warmup,
            "concurrency": list(concurrency),
            "target_ratio": TARGET_RATIO,
        },
        "levels": [],
    }
    with live_server() as server:
        targets, headers, expect = setup(server)
        daphne = web_pid(server)
        check(server, targets, headers, expect)
        names = list(targets)
        for conc in concurrency:
            conns = [connect(server) for _ in range(conc)]
            for name in names:  # warm up: connections, code paths, DB caches
                path, body = targets[name]
                load(server, path, body, headers, conc, warmup, conns)
            per = {n: {"rps": [], "lat": [], "errors": 0, "requests": 0, "cpu": 0.0} for n in names}
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    path, body = targets[name]
                    cpu0 = cpu_seconds(daphne)
                    count, elapsed, lat, errors = load(server, path, body, headers, conc, duration, conns)
                    per[name]["cpu"] += cpu_seconds(daphne) - cpu0
                    per[name]["rps"].append(count / elapsed)
                    per[name]["lat"].extend(lat)
                    per[name]["errors"] += errors
                    per[name]["requests"] += count
            for c in conns:
                c.close()
            level = {"concurrency": conc, "targets": {}}
            for name in names:
                d = per[name]
                level["targets"][name] = {
                    "rps_median": median(d["rps"]),
                    "rps_rounds": d["rps"],
                    "p50_ms": percentile(d["lat"], 50) * 1000,
                    "p99_ms": percentile(d["lat"], 99) * 1000,
                    "requests": d["requests"],
                    "errors": d["errors"],
                    # daphne's user+system CPU per request (all rounds), ms: less sensitive to other load.
                    "server_cpu_ms_per_req": 1000 * d["cpu"] / max(d["requests"], 1),
                }
                if name != "bare":
                    paired = [a / b for a, b in zip(d["rps"], per["bare"]["rps"], strict=True)]
                    level["targets"][name]["ratio_vs_bare"] = median(paired)
                    level["targets"][name]["ratio_rounds"] = paired
                    bare_cpu = per["bare"]["cpu"] / max(per["bare"]["requests"], 1)
                    this_cpu = d["cpu"] / max(d["requests"], 1)
                    level["targets"][name]["cpu_ratio_vs_bare"] = bare_cpu / this_cpu if this_cpu else float("nan")
            results["levels"].append(level)
    return results


def report(results):
    rows = []
    for level in results["levels"]:
        for name, t in level["targets"].items():
            ratio = t.get("ratio_vs_bare")
            rows.append(
                [
                    f"{name} describe" if name != "bare" else "bare JSON view",
                    level["concurrency"],
                    f"{t['rps_median']:.0f}",
                    f"{t['p50_ms']:.2f}",
                    f"{t['p99_ms']:.2f}",
                    f"{t['server_cpu_ms_per_req']:.2f}",
                    f"{ratio:.3f}x" if ratio is not None else "1 (baseline)",
                    f"{t['cpu_ratio_vs_bare']:.3f}x" if ratio is not None else "",
                    verdict(ratio, TARGET_RATIO) if ratio is not None else "",
                    t["errors"],
                ]
            )
    p = results["params"]
    head = (
        f"API: {p['rounds']} rounds x {p['seconds_per_target_per_round']}s per target, "
        f"target ratio >= {TARGET_RATIO}x of the bare view"
    )
    columns = [
        "target",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "srv CPU ms/req",
        "ratio",
        "CPU ratio",
        "target",
        "errors",
    ]
    return head + "\n" + table(columns, rows)


def main(**opts):
    results = run(**opts)
    print(report(results))
    print(f"results: {write_results('api', results)}")
    return results
