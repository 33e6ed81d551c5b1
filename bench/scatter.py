"""Scatter: one python job starts n subjobs with dxpy.new_dxjob and gathers them through JBORs, against
one top-level trivial job's created → done in the same run; then the job page and `dx watch --tree`
over that tree.

All in one run, against one server (`manage.py serve`: daphne + its real Celery worker):

- baseline: trivial jobs (`main() { true; }`, as `bench jobs`), one at a time, each awaited; half before
  the scatter, half after. created → done from the server's timestamps (the `done` transition); p50.
  Beside it, for scale, a trivial python job (`dxpy.run()` of a main that returns {}).
- scatter: tests/jobs/apps/scatter_python with n (default 1,000): main starts n `square` subjobs and a
  `gather` whose input is their n JBORs, and returns JBORs (the total, the n squares). Wall = the
  root's created → done. Per subjob = wall / n; the figure is per subjob ÷ the trivial p50 (target ≤ 1.5).
  Also (wall − trivial p50) / n, the overhead per subjob as `bench jobs` counts it.
- ceiling: what every subjob does at the least, with no platform around it: n sandboxes (job-like, as
  `bench jobs`'s) running `python3 -c "import dxpy"` (the subjobs are python: their code starts an
  interpreter and imports dxpy), as many at once as the worker's lanes. Per run = wall / n; the
  figures are that ÷ the trivial p50 (the least the target's ratio can be on this machine) and per
  subjob ÷ it (what the platform adds to a subjob's own work).
- ceiling with the bookkeeping: a python subjob's least work with the bookkeeping the jobs target
  allows a job, as `bench jobs`'s fourth baseline (bench/ledger.py): n POSTs (4 clients) to the bare
  view that makes a submit's transaction and sends one Celery task, which makes the worker's five
  around a sandboxed python that imports dxpy and makes the one call dxpy.run() makes before a
  subjob's entry point (its job's describe), to the server's bare JSON view through the sandbox's API
  relay (bench/views.py launch_true, bench/tasks.py boxed_true and DXPY_CALL). What any job system
  on this stack that makes that database work reaches with these subjobs; it errs on the fast side
  (no token, permission, scheduler, log, sampling, nor a parent that makes the subjobs one call each).
- page: GET /jobs/<root>/ with a logged-in session (~50 times after 3 warm-ups): p50/p95/p99 (target
  p95 ≤ 300 ms), with the rows and bytes it renders.
- find: the tree by rootExecution through /system/findExecutions the way dxpy pages (limit 100,
  doubling to 1,000, `starting` = the previous `next`), describe {"io": false}.
- dx watch --tree: the real client on the finished tree (it prints the backlog and returns), a few runs, p50.
- the scatter again, its job page open: one logged-in page socket (`/ws/jobs/<root>/`) from the root's
  launch to its end. Per subjob, as above (what watching costs the scatter); the socket's tree frames
  and their bytes, against what sending the whole tree at each of those frames would have been (the
  page's protocol before only changed jobs were sent).
"""

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import websocket

from tests.live import BIN, Dx

from .common import ROOT, live_server, median, percentile, table, write_results
from .joblist import Browser
from .jobs import TRIVIAL, Client, Helper, new_applet, set_at, wait_done

APP = ROOT / "tests" / "jobs" / "apps" / "scatter_python"
TRIVIAL_PY = 'import dxpy\n\n\n@dxpy.entry_point("main")\ndef main():\n    return {}\n\n\ndxpy.run()\n'


def python_applet(api, project, name, code, **spec):
    run_spec = {"interpreter": "python3", "code": code, "distribution": "Ubuntu", "release": "24.04"}
    return new_applet(api, project, name, code, runSpec=run_spec, **spec)


def created_to_done(api, applet, project, count):
    """created → done (s) of `count` runs of the applet, one at a time."""
    out = []
    for _ in range(count):
        desc = wait_done(api, api(f"/{applet}/run", {"project": project, "input": {}})["id"])
        assert desc["state"] == "done", desc
        out.append((set_at(desc, "done") - desc["created"]) / 1000)
    return out


class PageSocket(threading.Thread):
    """The job page's socket for one job tree, read to its end: how many tree frames and bytes it sent,
    and how many bytes the whole tree at each of those frames would have been."""

    def __init__(self, server, browser, job_id):
        super().__init__(daemon=True)
        self.url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
        self.headers = ["Cookie: " + "; ".join(f"{k}={v}" for k, v in browser.cookies.items())]
        self.origin = server.url
        self.tree, self.frames, self.bytes, self.whole_bytes, self.all_bytes = {}, 0, 0, 0, 0
        self.ended, self.error = False, None

    def run(self):
        try:
            ws = websocket.create_connection(self.url, header=self.headers, origin=self.origin, timeout=3 * 3600)
            ws.send(json.dumps({"cursors": {}}))
            while True:
                text = ws.recv()
                if not text:
                    return
                self.all_bytes += len(text)
                frame = json.loads(text)
                if frame.get("type") == "tree":
                    if frame.get("full"):
                        self.tree.clear()
                    self.tree.update((job["id"], job) for job in frame["jobs"])
                    self.frames += 1
                    self.bytes += len(text)
                    self.whole_bytes += len(json.dumps({"type": "tree", "jobs": list(self.tree.values())}))
                elif frame.get("type") == "end":
                    self.ended = True
                    return
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.error = repr(exc)

    def figures(self):
        return {
            "tree_frames": self.frames,
            "tree_bytes": self.bytes,
            "whole_tree_bytes": self.whole_bytes,
            "all_bytes": self.all_bytes,
            "jobs": len(self.tree),
            "ended": self.ended,
            "error": self.error,
        }


def scatter(api, project, n, on_launch=None):
    spec = json.loads((APP / "dxapp.json").read_text())
    applet = python_applet(
        api,
        project,
        "scatter_python",
        (APP / "src" / "code.py").read_text(),
        inputSpec=spec["inputSpec"],
        outputSpec=spec["outputSpec"],
    )
    root = api(f"/{applet}/run", {"project": project, "input": {"n": n}})["id"]
    if on_launch is not None:
        on_launch(root)
    desc = wait_done(api, root, interval=0.5, timeout=3 * 3600)
    assert desc["state"] == "done", desc
    squares = [x * x for x in range(1, n + 1)]
    assert desc["output"] == {"total": sum(squares), "squares": squares}, str(desc["output"])[:300]
    done_at = set_at(desc, "done")
    return root, {
        "n": n,
        "wall_s": (done_at - desc["created"]) / 1000,
        "root_running_s": ((set_at(desc, "waiting_on_output") or done_at) - desc["startedRunning"]) / 1000,
    }


def find_tree(api, project, root):
    """Walk the tree by rootExecution as dxpy pages a find; return (seconds, jobs, pages)."""
    body = {"class": "job", "project": project, "rootExecution": root, "describe": {"io": False}, "limit": 100}
    t0, ids, pages = time.perf_counter(), set(), 0
    while True:
        reply = api("/system/findExecutions", body)
        ids.update(r["id"] for r in reply["results"])
        pages += 1
        if reply["next"] is None:
            return time.perf_counter() - t0, len(ids), pages
        body = {**body, "starting": reply["next"], "limit": min(body["limit"] * 2, 1000)}


def page_times(server, root, fetches):
    browser = Browser(server)
    browser.login("admin", server.admin_password)
    path = f"/jobs/{root}/"
    for _ in range(3):
        status, html = browser.request("GET", path)
        assert status == 200, status
    times = []
    for _ in range(fetches):
        t0 = time.perf_counter()
        status, html = browser.request("GET", path)
        times.append(time.perf_counter() - t0)
        assert status == 200, status
    return times, html.count(b'class="tree-row'), len(html)


def watch_times(server, root, runs):
    workdir = Path(tempfile.mkdtemp(prefix="dxweb-bench-watch-"))
    try:
        dx = Dx(server, server.admin_token, workdir)
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = subprocess.run(
                [str(BIN / "dx"), "watch", root, "--tree"], cwd=workdir, env=dx.env, capture_output=True, timeout=3600
            )
            out.append(time.perf_counter() - t0)
            if result.returncode != 0:
                raise RuntimeError(f"dx watch --tree exited {result.returncode}: {result.stderr[-2000:]!r}")
        return out, result.stdout.count(b"\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ms(values_s):
    return {
        "p50_ms": percentile(values_s, 50) * 1000,
        "p95_ms": percentile(values_s, 95) * 1000,
        "p99_ms": percentile(values_s, 99) * 1000,
        "n": len(values_s),
    }


def run(n=None, trivials=None, page_fetches=None, watch_runs=None, redis=False, server_env=(), quick=False, **_):
    n = n or (50 if quick else 1000)
    trivials = trivials or (4 if quick else 30)
    page_fetches = page_fetches or (20 if quick else 50)
    watch_runs = watch_runs or (2 if quick else 3)
    extra = {}
    if redis:
        extra = {"REDIS_URL": "redis://127.0.0.1:6379/7", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {
        "params": {
            "n": n,
            "trivial_jobs": trivials,
            "page_fetches": page_fetches,
            "watch_runs": watch_runs,
            "mode": "redis+postgres" if redis else "embedded",
            "server_env": list(server_env),
        }
    }
    with live_server(**extra) as server:
        api = Client(server)
        project = api("/project/new", {"name": "bench-scatter"})["id"]
        trivial = new_applet(api, project, "trivial", TRIVIAL)
        trivial_py = python_applet(api, project, "trivial_py", TRIVIAL_PY)
        created_to_done(api, trivial, project, 1)  # warm-up
        created_to_done(api, trivial_py, project, 1)
        print("trivial jobs (before) ...", flush=True)
        before = created_to_done(api, trivial, project, trivials - trivials // 2)
        python = created_to_done(api, trivial_py, project, 3)
        print(f"scatter of {n} ...", flush=True)
        root, results["scatter"] = scatter(api, project, n)
        print("trivial jobs (after) ...", flush=True)
        after = created_to_done(api, trivial, project, trivials // 2)
        print(f"ceiling: {n} sandboxed dxpy imports ...", flush=True)
        helper = Helper(server)
        try:
            ceiling = helper("sandbox_burst", n, argv=[sys.executable, "-c", "import dxpy"])
            print(f"ceiling with the bookkeeping: {n} tasks, each a sandboxed dxpy import and call ...", flush=True)
            url = server.url + "/bench/launch-true"
            booked = helper("task_per_job_burst", n, url=url, ledger=True, python=True)
        finally:
            helper.close()
        single = median(before + after)
        s = results["scatter"]
        s["per_subjob_ms"] = 1000 * s["wall_s"] / n
        s["overhead_per_subjob_ms"] = 1000 * (s["wall_s"] - single) / n
        s["per_subjob_over_trivial"] = s["wall_s"] / n / single
        s["per_subjob_over_trivial_python"] = s["wall_s"] / n / median(python)
        per_import = ceiling["wall_s"] / n
        results["ceiling"] = {
            "n": n,
            "lanes": ceiling["lanes"],
            "wall_s": ceiling["wall_s"],
            "per_run_ms": 1000 * per_import,
            "over_trivial": per_import / single,
        }
        s["per_subjob_over_ceiling"] = s["wall_s"] / n / per_import
        per_booked = booked["wall_s"] / n
        results["ceiling_booked"] = {"n": n, "lanes": booked["lanes"], "wall_s": booked["wall_s"]}
        results["ceiling_booked"].update(per_run_ms=1000 * per_booked, over_trivial=per_booked / single)
        s["per_subjob_over_ceiling_booked"] = s["wall_s"] / n / per_booked
        results["trivial"] = {
            "created_to_done_p50_ms": single * 1000,
            "raw_s": before + after,
            "python_created_to_done_p50_ms": median(python) * 1000,
        }
        print("job page ...", flush=True)
        times, rows, size = page_times(server, root, page_fetches)
        results["page"] = {**ms(times), "tree_rows": rows, "bytes": size}
        print("find the tree ...", flush=True)
        seconds, found, pages = find_tree(api, project, root)
        results["find_tree"] = {"ms": seconds * 1000, "jobs": found, "pages": pages}
        print("dx watch --tree ...", flush=True)
        watched, lines = watch_times(server, root, watch_runs)
        results["watch_tree"] = {"p50_s": median(watched), "raw_s": watched, "lines": lines}
        print(f"scatter of {n} again, its job page open ...", flush=True)
        browser, sockets = Browser(server), []
        browser.login("admin", server.admin_password)

        def watch(job_id):
            sockets.append(PageSocket(server, browser, job_id))
            sockets[0].start()

        _, watched_scatter = scatter(api, project, n, on_launch=watch)
        sockets[0].join(120)
        watched_scatter["per_subjob_ms"] = 1000 * watched_scatter["wall_s"] / n
        results["page_socket"] = {**sockets[0].figures(), "scatter": watched_scatter}
    return results


def report(results):
    s, t, p, w, f, c = (results[k] for k in ("scatter", "trivial", "page", "watch_tree", "find_tree", "ceiling"))
    b = results["ceiling_booked"]
    rows = [
        ["trivial job created→done (p50)", f"{t['created_to_done_p50_ms']:.0f} ms", ""],
        ["trivial python job created→done (p50)", f"{t['python_created_to_done_p50_ms']:.0f} ms", ""],
        [f"scatter of {s['n']}: root created→done", f"{s['wall_s']:.1f} s", ""],
        ["per subjob (wall / n)", f"{s['per_subjob_ms']:.0f} ms", ""],
        ["per subjob ÷ trivial job", f"{s['per_subjob_over_trivial']:.2f}×", "target ≤ 1.5×"],
        ["per subjob ÷ trivial python job", f"{s['per_subjob_over_trivial_python']:.2f}×", ""],
        [
            f"ceiling: sandboxed `import dxpy`, {c['lanes']} at once, per run",
            f"{c['per_run_ms']:.0f} ms = {c['over_trivial']:.2f}× trivial job",
            "the least per subjob ÷ trivial can be",
        ],
        ["per subjob ÷ ceiling", f"{s['per_subjob_over_ceiling']:.2f}×", "what the platform adds"],
        [
            f"ceiling with the bookkeeping: a task per sandboxed `import dxpy` + 1 call, {b['lanes']} at once, per run",
            f"{b['per_run_ms']:.0f} ms = {b['over_trivial']:.2f}× trivial job",
            "what the allowed database work leaves",
        ],
        ["per subjob ÷ ceiling with the bookkeeping", f"{s['per_subjob_over_ceiling_booked']:.2f}×", ""],
        ["overhead per subjob ((wall − trivial) / n)", f"{s['overhead_per_subjob_ms']:.0f} ms", ""],
        [
            f"job page with {s['n'] + 1} children: p50 / p95 / p99",
            f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} ms",
            "target p95 ≤ 300 ms",
        ],
        ["job page: tree rows rendered, bytes", f"{p['tree_rows']} rows, {p['bytes'] / 1024:.0f} KiB", ""],
        ["findExecutions by rootExecution, paged", f"{f['ms']:.0f} ms, {f['jobs']} jobs, {f['pages']} pages", ""],
        ["dx watch --tree (finished tree, p50)", f"{w['p50_s']:.1f} s, {w['lines']} lines", ""],
    ]
    sock = results.get("page_socket")
    if sock:
        rows.append(
            [
                "scatter again, its job page open: per subjob; the page socket's tree frames",
                f"{sock['scatter']['per_subjob_ms']:.0f} ms; {sock['tree_frames']} frames, "
                f"{sock['tree_bytes'] / 1024:.0f} KiB "
                f"(the whole tree each time: {sock['whole_tree_bytes'] / 1024:.0f} KiB); "
                f"all frames {sock['all_bytes'] / 1024:.0f} KiB",
                "ended" if sock["ended"] else f"did not end: {sock['error']}",
            ]
        )
    print(table(["figure", "value", ""], rows))


def main(**opts):
    results = run(**opts)
    report(results)
    name = "scatter-redis" if opts.get("redis") else "scatter"
    path = write_results(name + ("-env" if opts.get("server_env") else ""), results)
    print(f"results: {path}")
    return results
