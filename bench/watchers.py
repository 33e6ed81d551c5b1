"""Fan-out: 100 concurrent `dx watch`-style watchers on one job, against one watcher alone.

A job prints `tick <i> <its clock>` (bash's $EPOCHREALTIME) every 20-50 ms (`sleep 0.0$((RANDOM % 4 + 2))`)
after a pause long enough for the watchers to connect. Each watcher is a websocket-client connection
to `/job-x/getLog/websocket` in its own thread, as `dx watch` speaks it (first frame {access_token,
token_type: "Bearer", numRecentMessages: 262144 (dx watch's default: the whole log so far),
recurseJobs: false, tail: true}); it notes when each frame arrives. Latency = receive time − printed
time (same host, same clock), pooled over every tick of every watcher.

Phases, in one server and one run, the same job shape each time: 1 watcher alone, then N watchers
(default 100) at once, in rounds whose order alternates (1, N then N, 1...), so that the machine's
noise hits both. Target: p99 with N watchers ≤ 3 × p99 with one.

Integrity: every watcher's received stream — the sequence of (line number, msg) of every frame but
END_LOG — is hashed (sha256) and compared with the hash of the stored log, read after the job ended
through the same API with {numRecentMessages: 10^9, tail: false} (the store's backlog, not the tail).
"""

import hashlib
import json
import os
import threading
import time

import websocket

from .common import cpu_seconds, live_server, percentile, table, web_pid, write_results
from .jobs import Client, new_applet, wait_done

CODE = """main() {
  sleep %(pause)s
  for i in $(seq 1 %(lines)d); do echo "tick $i $EPOCHREALTIME"; sleep 0.0$((RANDOM %% 4 + 2)); done
}
"""


def ws_url(server, path):
    return server.url.replace("http://", "ws://") + path


class Watcher(threading.Thread):
    """One `dx watch` connection: every frame as (line, msg), and ticks as (i, printed, received)."""

    def __init__(self, server, job_id, token=None, recent=262144, tail=True, timeout=600):
        super().__init__(daemon=True)
        self.url = ws_url(server, f"/{job_id}/getLog/websocket")
        self.request = {
            "access_token": token or server.admin_token,
            "token_type": "Bearer",
            "numRecentMessages": recent,
            "recurseJobs": False,
            "tail": tail,
        }
        self.timeout = timeout
        self.frames, self.ticks, self.read_at = [], [], {}
        self.first_at = self.connected_at = None
        self.ended, self.error = False, None
        self.close_code = self.close_reason = None
        self.bytes = 0

    def run(self):
        ws = None
        try:
            ws = websocket.create_connection(self.url, timeout=self.timeout)
            ws.send(json.dumps(self.request))
            self.connected_at = time.time()
            while True:
                opcode, frame = ws.recv_data()
                received = time.time()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = int.from_bytes(frame[:2], "big") if len(frame) >= 2 else None
                    self.close_reason = frame[2:].decode("utf-8", "replace")
                    break
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                data = json.loads(frame)
                msg = data.get("msg", "")
                if data.get("source") == "SYSTEM" and msg == "END_LOG" and not data.get("timestamp"):
                    self.ended = True
                    break
                if self.first_at is None:
                    self.first_at = received
                self.bytes += len(frame)
                self.frames.append((data.get("line"), msg, data.get("source"), data.get("level")))
                if data.get("source") == "APP" and msg.startswith("tick "):
                    parts = msg.split()
                    if len(parts) == 3:
                        self.ticks.append((int(parts[1]), float(parts[2]), received))
                        self.read_at[int(parts[1])] = data.get("timestamp", 0) / 1000  # the pump read it
        except Exception as exc:  # noqa: BLE001 - reported per watcher, never raised into the benchmark
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if ws is not None:
                ws.close()

    def digest(self):
        return stream_hash(self.frames)


def stream_hash(frames):
    """sha256 of the sequence of (line number, msg)."""
    h = hashlib.sha256()
    for line, msg, *_ in frames:
        h.update(json.dumps([line, msg]).encode() + b"\n")
    return h.hexdigest()


def stored_log(server, job_id, token=None):
    """The job's whole stored log, read after the end (the consumer's backlog path, not its tail)."""
    ref = Watcher(server, job_id, token=token, recent=10**9, tail=False)
    ref.run()
    if ref.error or not ref.ended:
        raise RuntimeError(f"could not read the stored log of {job_id}: {ref.error or 'no END_LOG'}")
    return ref


def stats(values_s):
    if not values_s:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "n": len(values_s),
        "p50_ms": percentile(values_s, 50) * 1000,
        "p99_ms": percentile(values_s, 99) * 1000,
        "max_ms": max(values_s) * 1000,
    }


def cpu_self():
    t = os.times()
    return t.user + t.system


def phase(server, api, project, applet, n, lines):
    """Run one ticker job with n watchers; return its measurements."""
    web = web_pid(server)
    job_id = api(f"/{applet}/run", {"project": project, "input": {}})["id"]
    watchers = [Watcher(server, job_id) for _ in range(n)]
    cpu_web0, cpu_me0, t0 = cpu_seconds(web), cpu_self(), time.time()
    for w in watchers:
        w.start()
    for w in watchers:
        w.join(900)
    desc = wait_done(api, job_id)
    cpu_web, cpu_me, wall = cpu_seconds(web) - cpu_web0, cpu_self() - cpu_me0, time.time() - t0
    ref = stored_log(server, job_id)
    ref_hash = ref.digest()
    lat, per_tick, connected = [], {}, []
    complete = 0
    for w in watchers:
        for i, printed, received in w.ticks:
            lat.append(received - printed)
            per_tick.setdefault(i, []).append(received)
        if [t[0] for t in w.ticks] == list(range(1, lines + 1)):
            complete += 1
        if w.connected_at is not None:
            connected.append(w.connected_at - t0)
    first_print = min((t[1] for w in watchers for t in w.ticks), default=None)
    late = sum(1 for w in watchers if w.first_at is None or (first_print is not None and w.first_at > first_print))
    spread = [max(r) - min(r) for r in per_tick.values() if len(r) > 1]
    printed = [t[1] for w in watchers for t in w.ticks]
    tick_span = (max(printed) - min(printed)) if len(printed) > 1 else 0.0
    return {
        "watchers": n,
        "job": job_id,
        "job_state": desc["state"],
        "lines": lines,
        "latency": stats(lat),
        "per_watcher_p99_ms_median": (
            percentile([percentile([r - p for _, p, r in w.ticks], 99) for w in watchers if w.ticks], 50) * 1000
        )
        if any(w.ticks for w in watchers)
        else None,
        "fanout_spread": stats(spread),
        "stored_lines": len(ref.frames),
        "stored_hash": ref_hash,
        "hash_matches": sum(1 for w in watchers if w.digest() == ref_hash),
        "complete_tick_sequences": complete,
        "ended_with_END_LOG": sum(1 for w in watchers if w.ended),
        "errors": [w.error for w in watchers if w.error],
        # closed by the server before END_LOG: (code, reason)
        "closed_early": [(w.close_code, w.close_reason) for w in watchers if not w.ended and w.close_code is not None],
        "late_watchers": late,
        "connect_s_max": max(connected) if connected else None,
        "wall_s": wall,
        "tick_span_s": tick_span,
        "daphne_cpu_s": cpu_web,
        "client_cpu_s": cpu_me,
        "daphne_cpu_pct_of_one_core": 100 * cpu_web / wall if wall else None,
        "_lat": lat,
    }


def run(quick=False, watchers=None, watch_lines=None, watch_rounds=None, redis=False, server_env=(), **_):
    n = watchers or (10 if quick else 100)
    if n < 2:
        raise SystemExit("--watchers: at least 2 (the baseline is 1)")
    lines = watch_lines or (100 if quick else 400)
    rounds = watch_rounds or (1 if quick else 2)
    pause = 3 if n <= 20 else 5
    # Every watcher comes from this host's one address: no cap on the sockets per address.
    extra = {"DXWEB_WS_MAX_PER_ADDRESS": "0"}
    if redis:
        extra.update(REDIS_URL="redis://127.0.0.1:6379/7", DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres")
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {
        "params": {
            "watchers": n,
            "lines": lines,
            "rounds": rounds,
            "pause_s": pause,
            "interval_s": "0.02-0.05 (uniform over 20/30/40/50 ms)",
            "mode": "redis+postgres" if redis else "embedded",
            "server_env": list(server_env),
        },
        "phases": [],
    }
    with live_server(**extra) as server:
        api = Client(server)
        project = api("/project/new", {"name": "bench-watchers"})["id"]
        applet = new_applet(api, project, "ticker", CODE % {"pause": pause, "lines": lines})
        warm = new_applet(api, project, "warm", "main() { echo warm; }")
        wait_done(api, api(f"/{warm}/run", {"project": project, "input": {}})["id"])
        for r in range(rounds):
            for count in (1, n) if r % 2 == 0 else (n, 1):
                print(f"round {r + 1}: {count} watcher(s) ...", flush=True)
                results["phases"].append({"round": r + 1, **phase(server, api, project, applet, count, lines)})
        results["server_log_problems"] = log_problems(server)
    summarize(results)
    return results


def log_problems(server, keep=60):
    """The server log's error lines and tracebacks (the temp directory goes when the server stops)."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    hits = [
        i
        for i, line in enumerate(lines)
        if "Traceback" in line or " ERROR " in line or "Exception" in line or "failed" in line.lower()
    ]
    out = []
    for i in hits:
        out.extend(lines[i : i + 25] if "Traceback" in lines[i] else [lines[i]])
    return out[-keep:]


def summarize(results):
    n = results["params"]["watchers"]
    one = [p for p in results["phases"] if p["watchers"] == 1]
    many = [p for p in results["phases"] if p["watchers"] == n]

    # Every tick of every round pooled; the raw latencies stay out of the JSON.
    one_all = stats([x for p in one for x in p.pop("_lat")])
    many_all = stats([x for p in many for x in p.pop("_lat")])
    s = {
        "one_p50_ms": one_all["p50_ms"],
        "one_p99_ms": one_all["p99_ms"],
        "one_n": one_all["n"],
        "many_p50_ms": many_all["p50_ms"],
        "many_p99_ms": many_all["p99_ms"],
        "many_n": many_all["n"],
    }
    s["ratio_p50"] = s["many_p50_ms"] / s["one_p50_ms"]
    s["ratio_p99"] = s["many_p99_ms"] / s["one_p99_ms"]
    s["met"] = s["ratio_p99"] <= 3
    s["hash_matches"] = f"{sum(p['hash_matches'] for p in many)}/{sum(p['watchers'] for p in many)}"
    results["summary"] = s


def report(results):
    n = results["params"]["watchers"]
    rows = []
    for p in results["phases"]:
        lat, spread = p["latency"], p["fanout_spread"]
        rows.append(
            [
                f"round {p['round']}",
                str(p["watchers"]),
                str(lat["n"]),
                f"{lat['p50_ms']:.1f}",
                f"{lat['p99_ms']:.1f}",
                f"{lat['max_ms']:.1f}",
                f"{spread['p50_ms']:.1f}" if spread["n"] else "-",
                f"{p['hash_matches']}/{p['watchers']}",
                str(p["late_watchers"]),
                f"{p['daphne_cpu_pct_of_one_core']:.0f}%",
                f"{p['client_cpu_s']:.1f}",
            ]
        )
    print(
        table(
            [
                "phase",
                "watchers",
                "ticks rcvd",
                "p50 ms",
                "p99 ms",
                "max ms",
                "spread p50 ms",
                "sha256 = stored",
                "late",
                "daphne CPU",
                "client CPU s",
            ],
            rows,
        )
    )
    s = results["summary"]
    print(
        table(
            ["", "p50 ms", "p99 ms"],
            [
                ["1 watcher (all rounds pooled)", f"{s['one_p50_ms']:.1f}", f"{s['one_p99_ms']:.1f}"],
                [f"{n} watchers (all rounds pooled)", f"{s['many_p50_ms']:.1f}", f"{s['many_p99_ms']:.1f}"],
                [f"ratio {n} / 1", f"{s['ratio_p50']:.2f}x", f"{s['ratio_p99']:.2f}x"],
            ],
        )
    )
    print(
        f"target p99({n}) <= 3 x p99(1): {'MET' if s['met'] else 'MISSED'}; "
        f"streams equal to the stored log: {s['hash_matches']}"
    )
    closed = [c for p in results["phases"] for c in p["closed_early"]]
    if closed:
        print(f"watchers closed by the server before END_LOG ({len(closed)}): {closed[:5]}")
    errors = [e for p in results["phases"] for e in p["errors"]]
    if errors:
        print(f"watcher errors ({len(errors)}): {errors[:5]}")


def main(**opts):
    results = run(**opts)
    report(results)
    suffix = (
        ("-redis" if opts.get("redis") else "")
        + ("-env" if opts.get("server_env") else "")
        + ("-quick" if opts.get("quick") else "")
    )
    print(f"results: {write_results('watchers' + suffix, results)}")
    return results
