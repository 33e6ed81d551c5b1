"""Sandbox: what a job-like sandboxed `true` costs the machine, burst after burst.

`python -m bench sandbox [--box-bursts 4] [--burst 200]`: in a helper process with Django set up
(bench/django_op.py, a data directory of its own in a temp dir), bursts of `--burst` job-like
sandboxed `true` (bench/boxes.py: the instance type's limits, binds like the runner's, a network
namespace with the API relayed), as many at once as a worker runs jobs, each burst once the machine
is quiet (bench.common.settle). Per burst, from /proc/stat: sandboxes per second, the whole machine's
CPU per sandbox (user, system), and how busy the machine was.

The baseline is the run's first burst: the later ones show whether the kernel's cost of a sandbox
drifts with the sandboxes made before it (it did, by 75% over four bursts, while the job's root was
a directory on disk: see docs/sandbox.md, "Why a tmpfs").
"""

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from .common import cpu_jiffies, settle, table, write_results
from .jobs import Helper


def run(quick=False, box_bursts=None, burst=None, **_):
    bursts = box_bursts or (2 if quick else 4)
    n = burst or (50 if quick else 200)
    tmp = Path(tempfile.mkdtemp(prefix="dxweb-bench-sandbox-"))
    env = {**os.environ, "DXWEB_DATA_DIR": str(tmp), "DXWEB_LOG_LEVEL": "WARNING"}
    helper = Helper(SimpleNamespace(env=env))
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    try:
        helper("sandbox_true", 2)  # warm-up
        for _ in range(bursts):
            settle()
            before, t0 = cpu_jiffies(), time.monotonic()
            box = helper("sandbox_burst", n)
            after = cpu_jiffies()
            user, system, idle, total = (b - a for a, b in zip(before, after, strict=True))
            rows.append(
                {
                    "n": n,
                    "lanes": box["lanes"],
                    "wall_s": box["wall_s"],
                    "per_s": n / box["wall_s"],
                    "cpu_ms_per_box": 1000 * (user + system) / tick / n,
                    "user_ms_per_box": 1000 * user / tick / n,
                    "system_ms_per_box": 1000 * system / tick / n,
                    "machine_busy": (total - idle) / total if total else 0.0,
                    "measured_s": time.monotonic() - t0,
                }
            )
    finally:
        helper.close()
        shutil.rmtree(tmp, ignore_errors=True)
    first = rows[0]
    return {
        "params": {"bursts": bursts, "burst": n},
        "bursts": rows,
        "last_over_first_cpu": rows[-1]["cpu_ms_per_box"] / first["cpu_ms_per_box"],
        "last_over_first_rate": rows[-1]["per_s"] / first["per_s"],
    }


def report(results):
    rows = [
        [
            str(i + 1),
            f"{b['per_s']:.1f}",
            f"{b['cpu_ms_per_box']:.1f}",
            f"{b['user_ms_per_box']:.1f}",
            f"{b['system_ms_per_box']:.1f}",
            f"{100 * b['machine_busy']:.0f}%",
        ]
        for i, b in enumerate(results["bursts"])
    ]
    p = results["params"]
    print(f"{p['bursts']} bursts of {p['burst']} job-like sandboxed `true`, {results['bursts'][0]['lanes']} at once")
    print(table(["burst", "per s", "CPU ms / box", "user", "system", "machine busy"], rows))
    print(
        f"  last burst / first: CPU per box {results['last_over_first_cpu']:.2f}x, "
        f"rate {results['last_over_first_rate']:.2f}x (1 = no drift)"
    )


def main(**opts):
    results = run(**opts)
    report(results)
    path = write_results("sandbox", results)
    print(f"results: {path}")
    return results
