"""Flood: a job writing 200 MB to stdout as fast as it can, while a small job logs a line every 50 ms.

In one server and one run:

1. unloaded: the small job (`tick <i> $EPOCHREALTIME` every 50 ms after a 2 s pause) alone, one
   `dx watch`-style watcher (bench/watchers.py's Watcher): print → receive latency;
2. loaded: the same small job again (asked for many lines), and once its watcher has seen 10 ticks the
   flood job is launched: `yes "<99 chars>" | head -c 200M` (2,097,152 lines of 100 bytes); with
   --flood-watcher, a watcher of its own too (as a user would `dx watch` it). Once the flood
   job has ended the small job runs 3 s more and is terminated. Loaded latency = the small job's ticks
   printed between the flood job's startedRunning and its end (stoppedRunning).

Meanwhile, every 0.5 s, the RSS of the web server (daphne) and of the worker (every `celery` process
under `manage.py serve`: the main process, its prefork children, the embedded beat), from psutil;
the job's own processes (bwrap, bash, yes, head) are counted apart. Reported: start (just before the
flood), peak (during it, or after it up to the end sample) and end (5 s after both jobs ended).

Checks on the flood job's stored log (read back through the API after the end): its size within
DXWEB_LOG_CAP_BYTES (4 MiB), exactly one truncation marker, and the flood watcher's stream equal to it.
Targets: loaded latency ≤ 2 × unloaded (p50 and p99); RSS flat (peak within 50 MB of start).
"""

import threading
import time

import psutil

from .common import cpu_seconds, live_server, table, web_pid, write_results
from .jobs import Client, new_applet, wait_done
from .watchers import Watcher, stats, stored_log

TICKER = """main() {
  sleep 2
  for i in $(seq 1 "$lines"); do echo "tick $i $EPOCHREALTIME"; sleep 0.05; done
}
"""

FLOOD = """main() {
  line=$(printf 'flood %%093d' 0)
  { yes "$line" | head -c %(bytes)d; } || true
}
"""

MB = 1024 * 1024
FLAT_MB = 50


class RssSampler(threading.Thread):
    """RSS of daphne, of the celery processes and of everything else under `manage.py serve`."""

    def __init__(self, server, interval=0.5):
        super().__init__(daemon=True)
        self.root = psutil.Process(server.proc.pid)
        self.interval = interval
        self.samples = []
        self.stop = threading.Event()

    def sample(self):
        web = worker = worker_max = job = 0
        n_worker = 0
        for proc in self.root.children(recursive=True):
            try:
                cmd = " ".join(proc.cmdline())
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            if "daphne" in cmd:
                web += rss
            elif "celery" in cmd:
                worker += rss
                worker_max = max(worker_max, rss)
                n_worker += 1
            else:
                job += rss
        row = {
            "t": time.time(),
            "web_mb": web / MB,
            "worker_mb": worker / MB,
            "worker_max_proc_mb": worker_max / MB,
            "worker_procs": n_worker,
            "job_procs_mb": job / MB,
        }
        self.samples.append(row)
        return row

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def run_ticker(api, server, project, applet, lines):
    job_id = api(f"/{applet}/run", {"project": project, "input": {"lines": lines}})["id"]
    watcher = Watcher(server, job_id)
    watcher.start()
    return job_id, watcher


def log_figures(ref):
    app = [f for f in ref.frames if f[2] == "APP"]
    markers = [f for f in ref.frames if f[2] == "SYSTEM" and f[1].startswith("[log truncated")]
    return {
        "stored_lines": len(ref.frames),
        "stored_app_lines": len(app),
        "stored_bytes": sum(len(f[1].encode()) + 1 for f in ref.frames),
        "stored_app_bytes": sum(len(f[1].encode()) + 1 for f in app),
        "truncation_markers": len(markers),
        "marker": markers[0][1] if markers else None,
    }


def window(samples, t0, t1):
    return [s for s in samples if t0 <= s["t"] <= t1]


def run(quick=False, flood_mb=None, flood_ticks=None, flood_watcher=None, redis=False, server_env=(), **_):
    size_mb = flood_mb or (20 if quick else 200)
    unloaded_lines = flood_ticks or (60 if quick else 200)
    watch_flood = bool(flood_watcher)
    extra = {}
    if redis:
        extra = {"REDIS_URL": "redis://127.0.0.1:6379/7", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {
        "params": {
            "flood_mb": size_mb,
            "flood_line_bytes": 100,
            "unloaded_ticks": unloaded_lines,
            "tick_interval_s": 0.05,
            "flood_watcher": watch_flood,
            "rss_interval_s": 0.5,
            "mode": "redis+postgres" if redis else "embedded",
            "server_env": list(server_env),
        }
    }
    with live_server(**extra) as server:
        api = Client(server)
        project = api("/project/new", {"name": "bench-flood"})["id"]
        ticker = new_applet(api, project, "ticker", TICKER, inputSpec=[{"name": "lines", "class": "int"}])
        flood = new_applet(api, project, "flood", FLOOD % {"bytes": size_mb * MB})
        warm = new_applet(api, project, "warm", "main() { echo warm; }")
        wait_done(api, api(f"/{warm}/run", {"project": project, "input": {}})["id"])
        web = web_pid(server)
        sampler = RssSampler(server)
        sampler.start()

        print("unloaded: the small job alone ...", flush=True)
        job_u, watcher_u = run_ticker(api, server, project, ticker, unloaded_lines)
        watcher_u.join(600)
        desc_u = wait_done(api, job_u)

        print(f"loaded: the small job during a {size_mb} MB flood ...", flush=True)
        job_l, watcher_l = run_ticker(api, server, project, ticker, 100000)
        deadline = time.monotonic() + 120
        while len(watcher_l.ticks) < 10 and time.monotonic() < deadline and watcher_l.is_alive():
            time.sleep(0.05)
        t_flood = time.time()
        rss_start = sampler.sample()
        cpu_web0 = cpu_seconds(web)
        flood_id = api(f"/{flood}/run", {"project": project, "input": {}})["id"]
        flood_watch = None
        if watch_flood:
            flood_watch = Watcher(server, flood_id)
            flood_watch.start()
        desc_f = wait_done(api, flood_id, interval=0.5, timeout=3600)
        t_flood_final = time.time()
        cpu_web_flood = cpu_seconds(web) - cpu_web0
        time.sleep(3)
        api(f"/{job_l}/terminate", {})
        watcher_l.join(600)
        desc_l = wait_done(api, job_l)
        if flood_watch is not None:
            flood_watch.join(600)
        time.sleep(5)
        rss_end = sampler.sample()
        sampler.stop.set()
        sampler.join(5)
        ref = stored_log(server, flood_id)

    f_start, f_end = desc_f["startedRunning"] / 1000, desc_f.get("stoppedRunning", t_flood_final * 1000) / 1000
    unloaded = [r - p for _, p, r in watcher_u.ticks]
    during = [r - p for _, p, r in watcher_l.ticks if f_start <= p <= f_end]
    # split: printed → read by the worker's pump (the frame's timestamp), read → received by the watcher
    during_pump = [watcher_l.read_at[i] - p for i, p, r in watcher_l.ticks if f_start <= p <= f_end]
    during_rest = [r - watcher_l.read_at[i] for i, p, r in watcher_l.ticks if f_start <= p <= f_end]
    unloaded_pump = [watcher_u.read_at[i] - p for i, p, r in watcher_u.ticks]
    before = [r - p for _, p, r in watcher_l.ticks if p < f_start]
    after = [r - p for _, p, r in watcher_l.ticks if p > f_end]
    samples = sampler.samples
    flood_window = window(samples, t_flood, rss_end["t"])
    rss = {}
    for key in ("web_mb", "worker_mb", "worker_max_proc_mb", "job_procs_mb"):
        peak = max(s[key] for s in flood_window)
        rss[key] = {
            "start": rss_start[key],
            "peak": peak,
            "end": rss_end[key],
            "peak_minus_start": peak - rss_start[key],
        }
    rss["flat"] = all(rss[k]["peak_minus_start"] <= FLAT_MB for k in ("web_mb", "worker_mb"))
    logf = log_figures(ref)
    flood_s = f_end - f_start
    results.update(
        {
            "unloaded": {
                "job": job_u,
                "state": desc_u["state"],
                "latency": stats(unloaded),
                "print_to_pump_read": stats(unloaded_pump),
            },
            "loaded": {
                "job": job_l,
                "state": desc_l["state"],
                "latency_during_flood": stats(during),
                "latency_before_flood": stats(before),
                "latency_after_flood": stats(after),
                "during_print_to_pump_read": stats(during_pump),
                "during_pump_read_to_watcher": stats(during_rest),
                "ticks_received": len(watcher_l.ticks),
                # [printed − flood start (s), latency (ms)] of every tick of the loaded run
                "series": [[round(p - f_start, 3), round(1000 * (r - p), 1)] for _, p, r in watcher_l.ticks],
                "tick_numbers_in_order": [t[0] for t in watcher_l.ticks] == list(range(1, len(watcher_l.ticks) + 1)),
            },
            "flood": {
                "job": flood_id,
                "state": desc_f["state"],
                "failure": desc_f.get("failureMessage"),
                "running_s": flood_s,
                "created_to_end_s": f_end - desc_f["created"] / 1000,
                "mb_per_s": size_mb / flood_s if flood_s else None,
                "daphne_cpu_s": cpu_web_flood,
                **logf,
                "cap_bytes": 4 * MB,
                "within_cap": logf["stored_app_bytes"] <= 4 * MB,
                "watcher": None
                if flood_watch is None
                else {
                    "received_lines": len(flood_watch.frames),
                    "ended": flood_watch.ended,
                    "error": flood_watch.error,
                    "hash_matches_stored": flood_watch.digest() == ref.digest(),
                },
            },
            "rss_mb": rss,
            "rss_samples": samples,
        }
    )
    u, d = results["unloaded"]["latency"], results["loaded"]["latency_during_flood"]
    results["ratios"] = {"p50": d["p50_ms"] / u["p50_ms"], "p99": d["p99_ms"] / u["p99_ms"]}
    results["met"] = results["ratios"]["p50"] <= 2 and results["ratios"]["p99"] <= 2
    return results


def report(results):
    u, L = results["unloaded"], results["loaded"]
    r = results["ratios"]
    rows = [
        [
            "small job alone (unloaded)",
            str(u["latency"]["n"]),
            f"{u['latency']['p50_ms']:.1f}",
            f"{u['latency']['p99_ms']:.1f}",
            f"{u['latency']['max_ms']:.1f}",
            "1 (baseline)",
        ]
    ]
    for key, name in (
        ("latency_before_flood", "  loaded run, before the flood"),
        ("latency_during_flood", "small job during the flood"),
        ("latency_after_flood", "  loaded run, after the flood"),
    ):
        s = L[key]
        ratio = f"p50 {r['p50']:.2f}x p99 {r['p99']:.2f}x" if key == "latency_during_flood" else ""
        rows.append([name, str(s["n"]), f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", ratio])
    for key, name in (
        ("during_print_to_pump_read", "    printed → read by the pump"),
        ("during_pump_read_to_watcher", "    read → watcher (store, poll, send)"),
    ):
        s = L[key]
        rows.insert(
            3 if "printed" in name else 4,
            [name, str(s["n"]), f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", ""],
        )
    print(table(["print → watcher", "ticks", "p50 ms", "p99 ms", "max ms", "ratio"], rows))
    print(f"target loaded <= 2 x unloaded (p50 and p99): {'MET' if results['met'] else 'MISSED'}")
    f = results["flood"]
    print(
        f"flood job: {f['state']}, {results['params']['flood_mb']} MB in {f['running_s']:.1f} s running "
        f"({f['mb_per_s']:.1f} MB/s), created→end {f['created_to_end_s']:.1f} s; "
        f"daphne CPU {f['daphne_cpu_s']:.1f} s"
    )
    print(
        f"  stored log: {f['stored_lines']} lines, {f['stored_app_bytes']} bytes of job output "
        f"({f['stored_app_bytes'] / MB:.2f} MiB; cap 4 MiB: {'within' if f['within_cap'] else 'OVER'}), "
        f"{f['truncation_markers']} truncation marker(s)"
    )
    if f["watcher"]:
        w = f["watcher"]
        print(
            f"  flood watcher: {w['received_lines']} lines, END_LOG {w['ended']}, "
            f"stream = stored log: {w['hash_matches_stored']}{', error ' + w['error'] if w['error'] else ''}"
        )
    rss = results["rss_mb"]
    rows = [
        [
            name,
            f"{rss[k]['start']:.0f}",
            f"{rss[k]['peak']:.0f}",
            f"{rss[k]['end']:.0f}",
            f"{rss[k]['peak_minus_start']:+.0f}",
        ]
        for k, name in (
            ("web_mb", "daphne"),
            ("worker_mb", "worker (all celery processes)"),
            ("worker_max_proc_mb", "  largest celery process"),
            ("job_procs_mb", "job processes (bwrap, bash, yes, head...)"),
        )
    ]
    print(table(["RSS MB", "start", "peak", "end", "peak-start"], rows))
    print(f"RSS flat (daphne and worker peak within {FLAT_MB} MB of start): {'YES' if rss['flat'] else 'NO'}")


def main(**opts):
    results = run(**opts)
    report(results)
    suffix = (
        ("-redis" if opts.get("redis") else "")
        + ("-env" if opts.get("server_env") else "")
        + ("-quick" if opts.get("quick") else "")
    )
    print(f"results: {write_results('flood' + suffix, results)}")
    return results
