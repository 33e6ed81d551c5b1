"""Workflows: an analysis's platform overhead per stage against one trivial job, in the same run.

One server (`manage.py serve`: daphne + its Celery worker; embedded, or PostgreSQL + Redis), one
applet `inc` (bash, one int input `n`, one int output `n` = n + 1, written with shell builtins:
`main() { echo "{\\"n\\": $((n + 1))}" > job_output.json; }`), one closed workflow of three `inc`
stages chained by links (stage 2's `n` = {"$dnanexus_link": {"stage": S1, "outputField": "n"}}, stage
3's likewise on S2). Then, in rounds that alternate which goes first (so machine noise hits both
alike), with a random 0-0.3 s pause before each submission:

- baseline: `inc` run alone (/applet-x/run), awaited; created → done = its `done` setAt − created.
- analysis: the workflow run (/workflow-x/run), awaited; from /analysis-x/describe:
    a stage job's own run time = its stoppedRunning − startedRunning (the worker's claim → its final
        transition; from stateTransitions: the first `running` → the last transition, if absent);
    analysis overhead = (the analysis's `done` setAt − its created) − Σ the stages' run times;
    per stage = that ÷ 3 (the number of stages).
- (info) a no-op Celery task (bench/tasks.py `bench.stamp`, through bench/django_op.py) sent through
  the same broker to the same worker once per round: send → its start, the broker's share of a dispatch.

Figures: p50/p99 of per-stage overhead and of baseline created → done, and the ratios of the p50s and
of the p99s (target ≤ 1.5×).

Every timestamp is the server's own (same clock for both arms); the client only waits (describe
with `fields: {state}` every --wf-poll seconds) and reads the full describe once at the end.

The overhead is also split into its gaps (they add up to it exactly): analysis created → stage 1
running, stage k done → stage k+1 running (split at stage k+1's `runnable`: the finishing worker's
after-commit wake-up, then the dispatch: message, worker, claim), stage 3 done → analysis done.
"""

import json
import os
import random
import time

from .common import connect, live_server, percentile, request, table, write_results
from .jobs import Helper

INC = 'main() { echo "{\\"n\\": $((n + 1))}" > job_output.json; }'
STAGES = 3
FINAL_JOB = {"done", "failed", "terminated"}
FINAL_ANALYSIS = {"done", "failed", "terminated"}
REDIS_ENV = {"REDIS_URL": "redis://127.0.0.1:6379/7", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}


class Client:
    """The API over one keep-alive connection."""

    def __init__(self, server):
        self.conn = connect(server)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.admin_token}"}

    def __call__(self, path, body=None):
        response, data = request(self.conn, "POST", path, json.dumps(body or {}).encode(), self.headers)
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:300]!r}")
        return json.loads(data)


def wait_final(api, execution_id, final, poll, timeout=600):
    """Describe `execution_id` (state only) every `poll` s until it is final; return its full describe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api(f"/{execution_id}/describe", {"fields": {"state": True}})["state"] in final:
            return api(f"/{execution_id}/describe", {})
        time.sleep(poll)
    raise TimeoutError(f"{execution_id} did not finish in {timeout} s")


def first_at(desc, state):
    for t in desc.get("stateTransitions", []):
        if t["newState"] == state:
            return t["setAt"]
    return None


def run_span(job):
    """A job's own run time (ms): startedRunning → stoppedRunning, or the first `running` → the last
    transition in stateTransitions when describe lacks them."""
    start, stop = job.get("startedRunning"), job.get("stoppedRunning")
    if start is None:
        start = first_at(job, "running")
    if stop is None:
        stop = job["stateTransitions"][-1]["setAt"]
    return start, stop


def setup(api):
    project = api("/project/new", {"name": "bench-workflows"})["id"]
    applet = api(
        "/applet/new",
        {
            "project": project,
            "name": "inc",
            "folder": "/",
            "dxapi": "1.0.0",
            "inputSpec": [{"name": "n", "class": "int"}],
            "outputSpec": [{"name": "n", "class": "int"}],
            "runSpec": {"interpreter": "bash", "code": INC, "distribution": "Ubuntu", "release": "24.04"},
        },
    )["id"]
    workflow = api("/workflow/new", {"project": project, "name": "chain3"})["id"]
    previous = None
    for i in range(STAGES):
        value = 0 if previous is None else {"$dnanexus_link": {"stage": previous, "outputField": "n"}}
        reply = api(
            f"/{workflow}/addStage",
            {"executable": applet, "id": f"s{i + 1}", "name": f"s{i + 1}", "editVersion": i, "input": {"n": value}},
        )
        previous = reply["stage"]
    api(f"/{workflow}/close", {})
    return project, applet, workflow


def one_baseline(api, project, applet, poll):
    t0 = time.time()
    job_id = api(f"/{applet}/run", {"project": project, "input": {"n": 0}})["id"]
    t1 = time.time()
    desc = wait_final(api, job_id, FINAL_JOB, poll)
    if desc["state"] != "done":
        raise RuntimeError(f"baseline {job_id} {desc['state']}: {desc.get('failureMessage')}")
    created, done = desc["created"], first_at(desc, "done")
    start, stop = run_span(desc)
    return {
        "id": job_id,
        "post_ms": (t1 - t0) * 1000,
        "created_to_done_ms": done - created,
        "created_to_running_ms": start - created,
        "created_to_runnable_ms": first_at(desc, "runnable") - created,
        "runnable_to_running_ms": start - first_at(desc, "runnable"),
        "run_ms": stop - start,
        "overhead_ms": (done - created) - (stop - start),
    }


def one_analysis(api, project, workflow, poll):
    t0 = time.time()
    analysis_id = api(f"/{workflow}/run", {"project": project})["id"]
    t1 = time.time()
    desc = wait_final(api, analysis_id, FINAL_ANALYSIS, poll)
    if desc["state"] != "done":
        raise RuntimeError(f"analysis {analysis_id} {desc['state']}: {desc.get('failureMessage')}")
    jobs = [stage["execution"] for stage in desc["stages"]]
    assert jobs[-1]["output"] == {"n": STAGES}, jobs[-1]["output"]
    created, done = desc["created"], first_at(desc, "done")
    spans = [run_span(job) for job in jobs]
    runs = [stop - start for start, stop in spans]
    overhead = (done - created) - sum(runs)
    gaps = {"created_to_s1_running": spans[0][0] - created}
    wake, dispatch = [], []
    for k in range(1, len(jobs)):
        runnable = first_at(jobs[k], "runnable")
        gaps[f"s{k}_done_to_s{k + 1}_running"] = spans[k][0] - spans[k - 1][1]
        wake.append(runnable - spans[k - 1][1])
        dispatch.append(spans[k][0] - runnable)
    gaps["s3_done_to_analysis_done"] = done - spans[-1][1]
    assert sum(gaps.values()) == overhead, (gaps, overhead)
    return {
        "id": analysis_id,
        "post_ms": (t1 - t0) * 1000,
        "created_to_done_ms": done - created,
        "stage_run_ms": runs,
        "overhead_ms": overhead,
        "per_stage_overhead_ms": overhead / len(jobs),
        "gaps_ms": gaps,
        # stage k+1's runnable − stage k's done: the finishing worker, after its commit, waking stage k+1
        "wake_ms": wake,
        # stage k+1's running − its runnable: its run message through the broker to a worker's claim
        "dispatch_ms": dispatch,
        # stage 1: analysis created → stage 1 created / → runnable (all inside /run's transaction)
        "s1_created_ms": jobs[0]["created"] - created,
        "s1_runnable_ms": first_at(jobs[0], "runnable") - created,
        # the last stage's job made and waiting on its input: about the end of /run's work
        "last_stage_made_ms": jobs[-1]["stateTransitions"][0]["setAt"] - created,
        # from there to stage 1's claim: the rest of /run's transaction, its commit, then the dispatch
        "last_stage_made_to_s1_running_ms": spans[0][0] - jobs[-1]["stateTransitions"][0]["setAt"],
    }


def stats(values):
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)}


def mode_of(env):
    db = "postgres" if env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) else "sqlite"
    broker = "redis" if env.get("REDIS_URL") else "embedded broker"
    return f"{db} + {broker}"


def run(quick=False, wf_analyses=None, wf_poll=None, redis=False, server_env=(), **_):
    n = wf_analyses or (5 if quick else 20)
    poll = wf_poll or 0.1
    extra = dict(REDIS_ENV) if redis else {}
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {"params": {"analyses": n, "baseline_jobs": n, "stages": STAGES, "poll_s": poll}}
    with live_server(**extra) as server:
        results["params"]["mode"] = mode_of(server.env)
        results["params"]["worker_concurrency"] = server.env.get("DXWEB_WORKER_CONCURRENCY", "default")
        api = Client(server)
        project, applet, workflow = setup(api)
        print(f"mode: {results['params']['mode']}; warm-up ...", flush=True)
        one_baseline(api, project, applet, poll)
        one_analysis(api, project, workflow, poll)
        helper = Helper(server)
        try:
            helper("celery_rt", 1)
            baselines, analyses_, celery = [], [], []
            for r in range(n):
                order = ("baseline", "analysis") if r % 2 == 0 else ("analysis", "baseline")
                for what in order:
                    time.sleep(random.uniform(0, 0.3))
                    if what == "baseline":
                        baselines.append(one_baseline(api, project, applet, poll))
                    else:
                        analyses_.append(one_analysis(api, project, workflow, poll))
                # (info) a no-op Celery task through the same broker and worker: send → its start
                # (celery_rt pauses 0-0.3 s itself before sending)
                celery.extend(1000 * item["send_to_start"] for item in helper("celery_rt", 1))
                if (r + 1) % 5 == 0:
                    print(f"  {r + 1}/{n} rounds", flush=True)
        finally:
            helper.close()
    results["baseline_raw"], results["analysis_raw"] = baselines, analyses_
    results["loadavg_at_end"] = os.getloadavg()
    per_stage = stats([a["per_stage_overhead_ms"] for a in analyses_])
    base = stats([b["created_to_done_ms"] for b in baselines])
    results["per_stage_overhead_ms"] = per_stage
    results["baseline_created_to_done_ms"] = base
    results["ratio_p50"] = per_stage["p50"] / base["p50"]
    results["ratio_p99"] = per_stage["p99"] / base["p99"]
    info = {
        "analysis_created_to_done_ms": [a["created_to_done_ms"] for a in analyses_],
        "analysis_overhead_ms": [a["overhead_ms"] for a in analyses_],
        "stage_run_ms": [x for a in analyses_ for x in a["stage_run_ms"]],
        "stage_wake_ms": [x for a in analyses_ for x in a["wake_ms"]],
        "stage_dispatch_ms": [x for a in analyses_ for x in a["dispatch_ms"]],
        "s1_runnable_ms": [a["s1_runnable_ms"] for a in analyses_],
        "last_stage_made_ms": [a["last_stage_made_ms"] for a in analyses_],
        "last_stage_made_to_s1_running_ms": [a["last_stage_made_to_s1_running_ms"] for a in analyses_],
        "workflow_run_post_ms": [a["post_ms"] for a in analyses_],
        "baseline_created_to_running_ms": [b["created_to_running_ms"] for b in baselines],
        "baseline_created_to_runnable_ms": [b["created_to_runnable_ms"] for b in baselines],
        "baseline_runnable_to_running_ms": [b["runnable_to_running_ms"] for b in baselines],
        "baseline_run_ms": [b["run_ms"] for b in baselines],
        "applet_run_post_ms": [b["post_ms"] for b in baselines],
        "celery_send_to_start_ms": celery,
    }
    for key in analyses_[0]["gaps_ms"]:
        info[f"gap_{key}_ms"] = [a["gaps_ms"][key] for a in analyses_]
    results["detail"] = {k: stats(v) for k, v in info.items()}
    base_oh = results["detail"]["baseline_created_to_running_ms"]
    results["ratio_to_baseline_overhead_p50"] = per_stage["p50"] / base_oh["p50"] if base_oh["p50"] else None
    return results


def report(results):
    p = results["params"]
    d = results["detail"]
    print(
        f"mode {p['mode']}: {len(results['analysis_raw'])} analyses of {p['stages']} stages, "
        f"{len(results['baseline_raw'])} baseline jobs, interleaved"
    )
    rows = [
        ["analysis overhead per stage", results["per_stage_overhead_ms"]],
        ["baseline job created→done", results["baseline_created_to_done_ms"]],
    ]
    print(
        table(
            ["figure", "n", "p50 ms", "p99 ms"],
            [[k, str(v["n"]), f"{v['p50']:.1f}", f"{v['p99']:.1f}"] for k, v in rows],
        )
    )
    r50, r99 = results["ratio_p50"], results["ratio_p99"]
    print(
        table(
            ["ratio", "p50", "p99", "target", "verdict"],
            [
                [
                    "per-stage overhead / baseline created→done",
                    f"{r50:.2f}x",
                    f"{r99:.2f}x",
                    "<= 1.5x",
                    "MET" if r50 <= 1.5 and r99 <= 1.5 else ("p50 MET, p99 MISSED" if r50 <= 1.5 else "MISSED"),
                ]
            ],
        )
    )
    names = {
        "analysis_created_to_done_ms": "analysis created→done",
        "analysis_overhead_ms": "analysis overhead (created→done − Σ stage runs)",
        "gap_created_to_s1_running_ms": "  analysis created → stage 1 running",
        "s1_runnable_ms": "    analysis created → stage 1 runnable (in /run)",
        "last_stage_made_ms": "    analysis created → stage 3 made (in /run)",
        "last_stage_made_to_s1_running_ms": "    stage 3 made → stage 1 running (commit, dispatch)",
        "gap_s1_done_to_s2_running_ms": "  stage 1 done → stage 2 running",
        "gap_s2_done_to_s3_running_ms": "  stage 2 done → stage 3 running",
        "stage_wake_ms": "    stage k done → stage k+1 runnable (wake)",
        "stage_dispatch_ms": "    stage k+1 runnable → running (dispatch)",
        "gap_s3_done_to_analysis_done_ms": "  stage 3 done → analysis done",
        "stage_run_ms": "stage job run (startedRunning→stoppedRunning)",
        "workflow_run_post_ms": "/workflow-x/run POST (client)",
        "baseline_created_to_running_ms": "baseline created→running",
        "baseline_created_to_runnable_ms": "  baseline created → runnable (in /run)",
        "baseline_runnable_to_running_ms": "  baseline runnable → running (dispatch)",
        "baseline_run_ms": "baseline run (startedRunning→stoppedRunning)",
        "applet_run_post_ms": "/applet-x/run POST (client)",
        "celery_send_to_start_ms": "(info) no-op Celery task send → start",
    }
    print(
        table(
            ["where the time goes", "n", "p50 ms", "p99 ms"],
            [[names[k], str(d[k]["n"]), f"{d[k]['p50']:.1f}", f"{d[k]['p99']:.1f}"] for k in names if k in d],
        )
    )
    if results.get("ratio_to_baseline_overhead_p50"):
        print(
            f"  (info) per-stage overhead p50 / baseline created→running p50: "
            f"{results['ratio_to_baseline_overhead_p50']:.2f}x; load average at the end: "
            + ", ".join(f"{x:.2f}" for x in results["loadavg_at_end"])
        )


def main(**opts):
    results = run(**opts)
    report(results)
    redis = results["params"]["mode"] != "sqlite + embedded broker"
    path = write_results(
        "workflows" + ("-redis" if redis else "") + ("-env" if opts.get("server_env") else ""), results
    )
    print(f"results: {path}")
    return results
