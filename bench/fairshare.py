"""Fair share: how long one user's small job waits behind another user's burst.

One user (ann) submits a burst of `--fair-burst` sleeping jobs of `--fair-seconds` each, more than the
worker's lanes can run at once. While it runs, another user (ben) submits small jobs (0.25 s) at
a quarter, half and three quarters of the burst's expected length, and ann one small job with
priority "high". Measured, each in the same run:

- ben's small job, created → running, in units of one burst job's running time (p50): the target is
  about one (it waits for a lane to free, not for the burst);
- the same wait for the burst's last job: what a first-in-first-out queue would have made ben's job
  wait (the baseline);
- ann's high-priority job's wait, in the same units.

`python -m bench fairshare [--fair-burst 40 --fair-seconds 5 --fair-rounds 2] [--redis]`
"""

import statistics
import time

from bench.common import live_server, table, write_results
from bench.jobs import Client, set_at

SLEEPER = "main() { sleep $secs; }"
UNFINISHED = ["idle", "waiting_on_input", "runnable", "running", "waiting_on_output", "terminating"]


class UserClient(Client):
    def __init__(self, server, token):
        super().__init__(server)
        self.headers = {**self.headers, "Authorization": f"Bearer {token}"}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def one_round(ann, ben, project, applet, burst, seconds, lanes):
    def run(client, secs, **extra):
        return client(f"/{applet}/run", {"project": project, "input": {"secs": secs}, **extra})["id"]

    burst_ids = [run(ann, seconds) for _ in range(burst)]
    expected = burst * seconds / lanes
    started = time.monotonic()
    small, high = [], []
    for fraction in (0.25, 0.5, 0.75):
        time.sleep(max(0.0, started + fraction * expected - time.monotonic()))
        small.append(run(ben, 0.25))
        if fraction == 0.5:
            high.append(run(ann, 0.25, priority="high"))
    everything = [*burst_ids, *small, *high]
    while ann("/system/findJobs", {"project": project, "id": everything, "state": UNFINISHED, "limit": 1})["results"]:
        time.sleep(0.5)
    desc = {}
    for start in range(0, len(everything), 100):
        found = ann("/system/findJobs", {"project": project, "id": everything[start : start + 100], "describe": True})
        desc.update((row["id"], row["describe"]) for row in found["results"])

    def wait(job_id):
        return (desc[job_id]["startedRunning"] - desc[job_id]["created"]) / 1000

    length = statistics.median((set_at(desc[j], "done") - desc[j]["startedRunning"]) / 1000 for j in burst_ids)
    return {
        "burst_job_running_s": length,
        "small_waits_s": [wait(j) for j in small],
        "high_waits_s": [wait(j) for j in high],
        "burst_last_wait_s": max(wait(j) for j in burst_ids),
        "failed": [j for j, d in desc.items() if d["state"] != "done"],
    }


def run(quick=False, fair_burst=None, fair_seconds=None, fair_rounds=None, redis=False, server_env=(), **_):
    burst = fair_burst or (10 if quick else 40)
    seconds = fair_seconds or (1.0 if quick else 5.0)
    rounds = fair_rounds or (1 if quick else 2)
    lanes = 2
    extra = {"DXWEB_WORKER_CONCURRENCY": str(lanes)}
    if redis:
        extra |= {
            "REDIS_URL": "redis://127.0.0.1:6379/7",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        }
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {"params": {"burst": burst, "seconds": seconds, "rounds": rounds, "lanes": lanes, "redis": redis}}
    with live_server(**extra) as server:
        admin = Client(server)
        ann, ben = UserClient(server, server.user("ann")), UserClient(server, server.user("ben"))
        project = ann("/project/new", {"name": "fair-share"})["id"]
        ann(f"/{project}/invite", {"invitee": "user-ben", "level": "CONTRIBUTE", "suppressEmailNotification": True})
        spec = {"inputSpec": [{"name": "secs", "class": "float"}], "outputSpec": []}
        run_spec = {"interpreter": "bash", "code": SLEEPER, "distribution": "Ubuntu", "release": "24.04"}
        applet = ann("/applet/new", {"project": project, "name": "sleeper", "runSpec": run_spec, **spec})["id"]
        del admin
        results["rounds"] = [one_round(ann, ben, project, applet, burst, seconds, lanes) for _ in range(rounds)]
    rows = results["rounds"]
    length = statistics.median(r["burst_job_running_s"] for r in rows)
    small = [w for r in rows for w in r["small_waits_s"]]
    high = [w for r in rows for w in r["high_waits_s"]]
    fifo = statistics.median(r["burst_last_wait_s"] for r in rows)
    results["summary"] = {
        "burst_job_running_s": length,
        "small_wait_p50_s": pct(small, 50),
        "small_wait_p99_s": pct(small, 99),
        "small_wait_p50_in_jobs": pct(small, 50) / length,
        "small_wait_p99_in_jobs": pct(small, 99) / length,
        "high_wait_p50_in_jobs": pct(high, 50) / length,
        "fifo_wait_s": fifo,
        "small_over_fifo_p99": pct(small, 99) / fifo,
        "failed": sum(len(r["failed"]) for r in rows),
    }
    return results


def report(results):
    s, p = results["summary"], results["params"]
    print(
        f"ann: {p['burst']} jobs of {p['seconds']} s on {p['lanes']} lanes, {p['rounds']} round(s); "
        f"one burst job ran {s['burst_job_running_s']:.2f} s (p50)"
    )
    print(
        table(
            ["wait (created→running)", "p50 s", "p99 s", "in burst jobs", "target"],
            [
                [
                    "ben's 0.25 s job",
                    f"{s['small_wait_p50_s']:.2f}",
                    f"{s['small_wait_p99_s']:.2f}",
                    f"{s['small_wait_p50_in_jobs']:.2f}x / {s['small_wait_p99_in_jobs']:.2f}x",
                    "about 1 job",
                ],
                ["ann's high-priority job", "", "", f"{s['high_wait_p50_in_jobs']:.2f}x", "about 1 job"],
                ["burst's last job (= FIFO's wait)", f"{s['fifo_wait_s']:.2f}", "", "", "(baseline)"],
            ],
        )
    )
    print(f"  ben's p99 wait / FIFO wait: {s['small_over_fifo_p99']:.3f}x; {s['failed']} failed")


def main(**opts):
    results = run(**opts)
    report(results)
    path = write_results("fairshare-redis" if opts.get("redis") else "fairshare", results)
    print(f"results: {path}")
    return results
