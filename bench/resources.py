"""Resources: what sampling a job's CPU, memory and disk (jobs/execution/sampler.py) costs a busy job.

Two servers (`manage.py serve`: daphne + its real Celery worker) run side by side, the same but for
DXWEB_SAMPLE_SECONDS: 0.5 (the default) on one, 0 (no sampling) on the other. Both are up for the
whole run, so whatever an idle server costs the machine, both kinds of run pay it. A CPU-bound job
(one Python loop of a fixed amount of work per core the job has, `nproc` of them: every core of its
instance type busy) runs N times on each, interleaved (on, off, off, on, ...), one job at a time.

Per run:
- compute: the seconds the job's loops took, timed inside the job (the figure sampling could slow);
- wall: startedRunning -> stoppedRunning, from the server's own timestamps;
- worker CPU: the CPU seconds of the worker's processes (Celery's main process, its pool and beat:
  their own threads, which include the sampler; not the job's processes) during the run.

Overhead = p50(compute, sampling on) / p50(compute, off) - 1; the target is <= 2 %. Also the p50
of each round's own ratio (its two jobs ran back to back). The worker's
CPU per run, on minus off, is what the sampler itself costs, as a share of the job's CPU.

Both are noisy on a shared machine (a run varies by more than the sampler costs), so the sampler's
cost is also measured directly, in a process with the server's settings (`python -m bench.resources
--direct <job id>`): the thread CPU time of one sample of a real sandboxed job's cgroup, and of one
batch insert of 4 samples (rolled back), as a share of one core at one sample per 0.5 s.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # the --direct helper, run with the server's environment
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
    import django

    django.setup()

from bench.common import ROOT, live_server, percentile, table, write_results

TARGET = 0.02
FINAL = {"done", "failed", "terminated"}
# Every core the job has runs one loop of WORK iterations; the job's output is their wall time.
CODE = """main() {
    cores=$(nproc)
    start=$(date +%s.%N)
    for i in $(seq 1 "$cores"); do
        python3 -c 'x = 0
for i in range({work}):
    x += i * i' &
    done
    wait
    end=$(date +%s.%N)
    seconds=$(python3 -c "print($end - $start)")
    echo "cores=$cores seconds=$seconds"
    dx-jobutil-add-output seconds "$seconds" --class float
    dx-jobutil-add-output cores "$cores" --class int
}"""


def worker_cpu_seconds(server):
    """CPU seconds (user + system) of the server's Celery processes so far: their own threads only."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"celery" not in (entry / "cmdline").read_bytes():
                continue
            if f"dxweb-{server.proc.pid}@".encode() not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Side:
    """One server: its applet and the runs made on it."""

    def __init__(self, server, label, work):
        self.server, self.label, self.runs = server, label, []
        self.project = server.api("/project/new", {"name": f"resources {label}"})["id"]
        self.applet = server.api(
            "/applet/new",
            {
                "project": self.project,
                "name": "busy",
                "inputSpec": [],
                "outputSpec": [{"name": "seconds", "class": "float"}, {"name": "cores", "class": "int"}],
                "runSpec": {"interpreter": "bash", "code": CODE.replace("{work}", str(work))},
            },
        )["id"]

    def run_once(self):
        cpu_before = worker_cpu_seconds(self.server)
        job_id = self.server.api(f"/{self.applet}/run", {"project": self.project})["id"]
        while True:
            time.sleep(0.25)
            desc = self.server.api(f"/{job_id}/describe", {})
            if desc["state"] in FINAL:
                break
        cpu_after = worker_cpu_seconds(self.server)
        if desc["state"] != "done":
            raise RuntimeError(f"{job_id} {desc['state']}: {desc.get('failureMessage')}")
        run = {
            "job": job_id,
            "compute_s": float(desc["output"]["seconds"]),
            "cores": int(desc["output"]["cores"]),
            "wall_s": (desc["stoppedRunning"] - desc["startedRunning"]) / 1000,
            "worker_cpu_s": cpu_after - cpu_before,
        }
        self.runs.append(run)
        return run


def stats(values):
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "min": min(values), "max": max(values)}


def run(quick=False, res_runs=None, res_work=None, **_):
    n = res_runs or (3 if quick else 10)
    work = res_work or (10_000_000 if quick else 40_000_000)
    with live_server() as on_server, live_server(DXWEB_SAMPLE_SECONDS="0") as off_server:
        on, off = Side(on_server, "sampling on", work), Side(off_server, "sampling off", work)
        on.run_once(), off.run_once()  # warm-up (not counted): imports, the first sandbox
        on.runs.clear(), off.runs.clear()
        for i in range(n):
            for side in (on, off) if i % 2 == 0 else (off, on):
                result = side.run_once()
                print(
                    f"  {side.label:13} compute {result['compute_s']:.3f} s  wall {result['wall_s']:.3f} s  "
                    f"worker CPU {result['worker_cpu_s']:.3f} s",
                    flush=True,
                )
        direct = subprocess.run(
            [sys.executable, "-m", "bench.resources", "--direct", on.runs[-1]["job"]],
            cwd=ROOT,
            env=on_server.env,
            capture_output=True,
            text=True,
            check=True,
        )
        samples = on_server.manage(
            "shell",
            "-c",
            "from jobs.models import ResourceSample as R; import json; "
            f"print(json.dumps([R.objects.filter(job_id=j).count() for j in {[r['job'] for r in on.runs]!r}]))",
        ).stdout
    results = {"params": {"runs": n, "work": work, "sample_seconds": 0.5}}
    for side, key in ((on, "on"), (off, "off")):
        results[key] = {
            "compute_s": stats([r["compute_s"] for r in side.runs]),
            "wall_s": stats([r["wall_s"] for r in side.runs]),
            "worker_cpu_s": stats([r["worker_cpu_s"] for r in side.runs]),
            "cores": side.runs[0]["cores"],
            "runs": side.runs,
        }
    results["samples_per_job"] = json.loads(samples.strip().splitlines()[-1])
    results["direct"] = json.loads(direct.stdout.strip().splitlines()[-1])
    results["overhead"] = results["on"]["compute_s"]["p50"] / results["off"]["compute_s"]["p50"] - 1
    results["wall_overhead"] = results["on"]["wall_s"]["p50"] / results["off"]["wall_s"]["p50"] - 1
    # Round i ran its two jobs back to back: their ratio is less exposed to the machine's load drifting.
    pairs = [a["compute_s"] / b["compute_s"] - 1 for a, b in zip(on.runs, off.runs)]
    results["paired_overhead"] = {"p50": percentile(pairs, 50), "each": pairs}
    job_cpu = results["on"]["compute_s"]["p50"] * results["on"]["cores"]
    worker_extra = results["on"]["worker_cpu_s"]["p50"] - results["off"]["worker_cpu_s"]["p50"]
    results["sampler_cpu_share"] = worker_extra / job_cpu
    return results


def report(results):
    rows = []
    for key, label in (("on", "sampling on (0.5 s)"), ("off", "sampling off (0)")):
        side = results[key]
        rows.append(
            [
                label,
                f"{side['compute_s']['p50']:.3f}",
                f"{side['compute_s']['p99']:.3f}",
                f"{side['wall_s']['p50']:.3f}",
                f"{side['wall_s']['p99']:.3f}",
                f"{side['worker_cpu_s']['p50']:.3f}",
            ]
        )
    print(
        table(
            ["", "compute p50 s", "compute p99 s", "wall p50 s", "wall p99 s", "worker CPU p50 s"],
            rows,
        )
    )
    print(
        f"runs: {results['params']['runs']} each, interleaved; the job keeps {results['on']['cores']} cores busy; "
        f"samples stored per job: {results['samples_per_job']}"
    )
    overhead = results["overhead"]
    print(
        f"overhead (compute p50 on/off - 1): {overhead * 100:+.2f} %  (target <= {TARGET * 100:.0f} %: "
        f"{'MET' if overhead <= TARGET else 'NOT MET'}); wall p50: {results['wall_overhead'] * 100:+.2f} %; "
        f"p50 of each round's on/off - 1: {results['paired_overhead']['p50'] * 100:+.2f} %"
    )
    print(f"the sampler's own CPU (worker CPU on - off) / the job's CPU: {results['sampler_cpu_share'] * 100:.3f} %")
    direct = results["direct"]
    print(
        f"direct: one sample {direct['sample_us']:.1f} us of CPU, one batch insert of 4 {direct['insert_ms']:.2f} ms; "
        f"at 0.5 s: {direct['core_share'] * 100:.4f} % of one core"
    )


def main(**opts):
    results = run(**opts)
    report(results)
    path = write_results("resources", results)
    print(f"results: {path}")
    return results


def direct_cost(job_id, n=2000, inserts=50):
    """CPU time of the sampler's work, measured in this thread (Django set up with the server's settings)."""
    import tempfile

    from django.db import transaction

    from jobs.execution import sandbox
    from jobs.execution.sampler import Sampler
    from jobs.models import Job, ResourceSample

    job = Job.objects.get(pk=job_id)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sampler-", dir=os.environ.get("DXWEB_DATA_DIR")))
    limits = sandbox.instance_limits(None)
    spec = sandbox.SandboxSpec(
        job_id=job.id, home=workdir / "home", env={"PATH": "/usr/bin:/bin"}, workdir=workdir, **limits
    )
    proc = sandbox.launch(spec, ["sleep", "60"])
    try:
        sampler = Sampler(job, proc, proc._cgroup, 0.5)
        sampler.last = (time.monotonic(), proc._cgroup.usage()[0])
        started = time.thread_time()
        for _ in range(n):
            sampler.sample()
            if len(sampler.kept) > 1000:
                sampler.kept.clear()
        sample_s = (time.thread_time() - started) / n
        rows = [ResourceSample(job=job, at=i, cpu=1.0, memory_mb=100.0, disk_mb=1.0) for i in range(4)]
        started = time.thread_time()
        for _ in range(inserts):
            try:
                with transaction.atomic():
                    ResourceSample.objects.bulk_create(rows)
                    Job.objects.filter(pk=job.id, tries=job.tries).exists()
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            for row in rows:
                row.pk = None
        insert_s = (time.thread_time() - started) / inserts
    finally:
        proc.kill_tree()
    # At 0.5 s: two samples a second, one insert every 2 s.
    return {"sample_us": sample_s * 1e6, "insert_ms": insert_s * 1e3, "core_share": 2 * sample_s + insert_s / 2}


if __name__ == "__main__" and sys.argv[1:2] == ["--direct"]:
    print(json.dumps(direct_cost(sys.argv[2])))
