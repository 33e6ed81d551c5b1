"""Log latency: a line printed in a job → the same line received by a `dx watch`-style websocket watcher.

A job prints `tick <i> <its clock>` (bash's $EPOCHREALTIME, µs) every ~50 ms after a 2 s pause
(time for the watcher to connect); the watcher (websocket-client, as dx watch does:
`/job-x/getLog/websocket`, first frame {access_token, token_type, numRecentMessages: 0,
recurseJobs: false, tail: true}) notes when each frame arrives. Same host, same clock:
latency = receive time − printed time. The frame's own `timestamp` (when the worker's pump
read the line, ms) splits it into pipe+pump (printed → read) and store+notify+stream+socket
(read → received).

Baseline, in the same server and the same minutes: a bare websocket echo (bench/consumers.py,
`/bench/echo/websocket`, no auth, no DB) — one round trip every 50 ms on a second socket
while the job logs.

Run in two server modes: embedded (filesystem broker, in-memory channel layer: the consumer
re-reads the store every DXWEB_LOG_POLL_SECONDS = 0.1 s) and redis (REDIS_URL: Redis
broker and channel layer, the worker's notify() wakes the consumer; a fresh PostgreSQL
database). Target (redis): p50 ≤ 2 × echo p50 + 50 ms.
"""

import json
import threading
import time

import websocket

from .common import live_server, percentile, table, write_results
from .jobs import Client, new_applet, wait_done

MODES = {
    "embedded": {},
    "redis": {"REDIS_URL": "redis://127.0.0.1:6379/7", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"},
}

CODE = """main() {
  sleep 2
  for i in $(seq 1 %d); do echo "tick $i $EPOCHREALTIME"; sleep 0.05; done
}
"""


def ws_url(server, path):
    return server.url.replace("http://", "ws://") + path


def echo_loop(server, stop, out, interval=0.05):
    ws = websocket.create_connection(ws_url(server, "/bench/echo/websocket"), timeout=30)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            ws.send(str(t0))
            ws.recv()
            out.append(time.perf_counter() - t0)
            time.sleep(interval)
    finally:
        ws.close()


def watch(server, job_id, lines):
    ws = websocket.create_connection(ws_url(server, f"/{job_id}/getLog/websocket"), timeout=120)
    ws.send(
        json.dumps(
            {
                "access_token": server.admin_token,
                "token_type": "Bearer",
                "numRecentMessages": 0,
                "recurseJobs": False,
                "tail": True,
            }
        )
    )
    got = []
    try:
        while True:
            frame = ws.recv()
            received = time.time()
            if not frame:
                break
            data = json.loads(frame)
            if data.get("msg") == "END_LOG":
                break
            msg = data.get("msg", "")
            if data.get("source") == "APP" and msg.startswith("tick "):
                _, i, printed = msg.split()
                got.append(
                    {"i": int(i), "printed": float(printed), "read": data["timestamp"] / 1000, "received": received}
                )
                if len(got) == lines:
                    break
    finally:
        ws.close()
    return got


def one_mode(mode, lines):
    with live_server(**MODES[mode]) as server:
        api = Client(server)
        project = api("/project/new", {"name": "bench-logs"})["id"]
        applet = new_applet(api, project, "ticker", CODE % lines)
        warm = new_applet(api, project, "warm", "main() { echo warm; }")
        wait_done(api, api(f"/{warm}/run", {"project": project, "input": {}})["id"])
        stop, echoes = threading.Event(), []
        # the echo socket runs alongside the watcher, in the same minutes
        echo = threading.Thread(target=echo_loop, args=(server, stop, echoes), daemon=True)
        job_id = api(f"/{applet}/run", {"project": project, "input": {}})["id"]
        echo.start()
        got = watch(server, job_id, lines)
        stop.set()
        echo.join(10)
        desc = wait_done(api, job_id)
    lat = [g["received"] - g["printed"] for g in got]
    pump = [g["read"] - g["printed"] for g in got]
    rest = [g["received"] - g["read"] for g in got]

    def stats(xs):
        return {"p50_ms": percentile(xs, 50) * 1000, "p99_ms": percentile(xs, 99) * 1000, "n": len(xs)}

    result = {
        "mode": mode,
        "job_state": desc["state"],
        "lines_printed": lines,
        "lines_received": len(got),
        "print_to_watcher": stats(lat),
        "print_to_read": stats(pump),
        "read_to_watcher": stats(rest),
        "echo_rt": stats(echoes),
    }
    result["target_ms"] = 2 * result["echo_rt"]["p50_ms"] + 50
    result["met"] = result["print_to_watcher"]["p50_ms"] <= result["target_ms"]
    result["ratio_p50_to_echo"] = result["print_to_watcher"]["p50_ms"] / result["echo_rt"]["p50_ms"]
    return result


def run(quick=False, lines=None, modes=None, **_):
    lines = lines or (60 if quick else 200)
    return {"params": {"lines": lines, "interval_s": 0.05}, "modes": [one_mode(m, lines) for m in modes or MODES]}


def report(results):
    rows = []
    for r in results["modes"]:
        for key, name in (
            ("print_to_watcher", "print → watcher"),
            ("print_to_read", "  print → pump read"),
            ("read_to_watcher", "  pump read → watcher"),
            ("echo_rt", "ws echo round trip"),
        ):
            s = r[key]
            verdict = ""
            if key == "print_to_watcher":
                verdict = (
                    f"target p50 <= {r['target_ms']:.1f} ms: "
                    + ("MET" if r["met"] else "MISSED")
                    + ("" if r["mode"] == "redis" else " (info)")
                )
            rows.append([r["mode"], name, str(s["n"]), f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", verdict])
    print(table(["mode", "latency", "n", "p50 ms", "p99 ms", "target"], rows))


def main(**opts):
    results = run(**opts)
    report(results)
    print(f"results: {write_results('logs', results)}")
    return results
