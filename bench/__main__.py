"""`python -m bench [api|transfer ...] [--quick]`: run the benchmarks, print tables, write bench/results/<name>.json."""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from bench import (  # noqa: E402  (after the path is set)
    api,
    fairshare,
    flood,
    joblist,
    jobs,
    logs,
    resources,
    sandbox,
    scatter,
    ssh,
    transfer,
    watchers,
    workflows,
)

BENCHMARKS = {
    "api": api,
    "transfer": transfer,
    "jobs": jobs,
    "logs": logs,
    "ssh": ssh,
    "watchers": watchers,
    "flood": flood,
    "joblist": joblist,
    "workflows": workflows,
    "resources": resources,
    "fairshare": fairshare,
    "scatter": scatter,
    "sandbox": sandbox,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "which", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run (fewer rounds, smaller files)")
    api_opts = parser.add_argument_group("api")
    api_opts.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="client threads (default 1 8)")
    api_opts.add_argument("--rounds", type=int, help="measured rounds per concurrency (default 7, quick 2)")
    api_opts.add_argument("--duration", type=float, help="seconds per target per round (default 1.5, quick 0.75)")
    xfer = parser.add_argument_group("transfer")
    xfer.add_argument("--sizes", type=int, nargs="+", help="file sizes in MB (default 200 16, quick 32)")
    xfer.add_argument("--reps", type=int, help="repetitions per size (default 5, quick 2)")
    job_opts = parser.add_argument_group("jobs")
    job_opts.add_argument("--jobs", dest="jobs_n", type=int, help="sequential trivial jobs for latency (default 36)")
    job_opts.add_argument(
        "--job-rounds", dest="job_rounds", type=int, help="rounds interleaving jobs and baselines (default 6)"
    )
    job_opts.add_argument("--burst", type=int, help="jobs (and no-op tasks) submitted at once (default 200)")
    job_opts.add_argument("--scatter-n", type=int, help="subjobs of the scatter (default 100; 0 skips it)")
    job_opts.add_argument(
        "--redis",
        action="store_true",
        help="jobs, watchers, flood, joblist, workflows, scatter: run against Redis + a fresh PostgreSQL database "
        "instead of the embedded mode",
    )
    job_opts.add_argument(
        "--server-env",
        nargs="+",
        default=(),
        metavar="KEY=VALUE",
        help="jobs, watchers, flood, joblist, workflows: extra environment for the server "
        "(experiments, e.g. a settings module)",
    )
    log_opts = parser.add_argument_group("logs")
    log_opts.add_argument("--lines", type=int, help="lines the logging job prints, one per 50 ms (default 200)")
    log_opts.add_argument("--modes", nargs="+", choices=["embedded", "redis"], help="logs: server modes (both)")
    ssh_opts = parser.add_argument_group("ssh")
    ssh_opts.add_argument("--keys", type=int, help="keystrokes per path per round (default 100, quick 40)")
    ssh_opts.add_argument("--ssh-rounds", type=int, help="rounds interleaving the paths (default 4, quick 2)")
    watch_opts = parser.add_argument_group("watchers")
    watch_opts.add_argument("--watchers", type=int, help="concurrent watchers of one job (default 100, quick 10)")
    watch_opts.add_argument("--watch-lines", type=int, help="ticks the watched job prints (default 400, quick 100)")
    watch_opts.add_argument("--watch-rounds", type=int, help="rounds of (1 watcher, N watchers) (default 2, quick 1)")
    flood_opts = parser.add_argument_group("flood")
    flood_opts.add_argument("--flood-mb", type=int, help="MiB the flood job writes to stdout (default 200, quick 20)")
    flood_opts.add_argument(
        "--flood-ticks", type=int, help="lines of the small job's unloaded run, one per 50 ms (default 200, quick 60)"
    )
    flood_opts.add_argument(
        "--flood-watcher",
        action="store_true",
        default=None,
        help="flood: also attach a watcher to the flood job itself (default: none)",
    )
    list_opts = parser.add_argument_group("joblist")
    list_opts.add_argument("--joblist-jobs", type=int, help="jobs in the project (default 100000, quick 10000)")
    list_opts.add_argument("--joblist-rounds", type=int, help="rounds over every page variant (default 8, quick 3)")
    list_opts.add_argument("--joblist-reps", type=int, help="requests per variant per round (default 8, quick 4)")
    wf_opts = parser.add_argument_group("workflows")
    wf_opts.add_argument(
        "--analyses",
        dest="wf_analyses",
        type=int,
        help="3-stage analyses, and as many baseline jobs (default 20, quick 5)",
    )
    wf_opts.add_argument("--wf-poll", dest="wf_poll", type=float, help="seconds between the client's describes (0.1)")
    res_opts = parser.add_argument_group("resources")
    res_opts.add_argument(
        "--res-runs",
        dest="res_runs",
        type=int,
        help="busy jobs sampled, and as many not (default 10, quick 3)",
    )
    res_opts.add_argument(
        "--res-work", dest="res_work", type=int, help="loop iterations per core of the busy job (default 40000000)"
    )
    fair = parser.add_argument_group("fairshare")
    fair.add_argument("--fair-burst", type=int, help="one user's burst of jobs (default 40, quick 10)")
    fair.add_argument("--fair-seconds", type=float, help="each burst job's length (default 5, quick 1)")
    fair.add_argument("--fair-rounds", type=int, help="rounds (default 2, quick 1)")
    box_opts = parser.add_argument_group("sandbox")
    box_opts.add_argument(
        "--box-bursts", type=int, help="bursts of --burst sandboxed `true` in a row (default 4, quick 2)"
    )
    scatter_opts = parser.add_argument_group("scatter")
    scatter_opts.add_argument("--n", type=int, help="subjobs of the python scatter (default 1000, quick 50)")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    opts = {k: v for k, v in vars(args).items() if k != "which" and v is not None}
    opts["concurrency"] = tuple(args.concurrency)
    outcome = {}
    for name in args.which or list(BENCHMARKS):
        print(f"\n== {name} ==", flush=True)
        outcome[name] = BENCHMARKS[name].main(**opts)
    return outcome


if __name__ == "__main__":
    main()
