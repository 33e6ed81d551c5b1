"""The job-like sandbox of the benchmarks' baselines: `true` (or another command) in a sandbox made as
the runner makes a job's, with none of a job's bookkeeping. Used by bench/django_op.py (sandbox bursts
in the helper process) and bench/tasks.py (the same sandbox inside a Celery task of the server's
worker, for a task per job)."""

import shutil
from urllib.parse import urlparse

from django.conf import settings

from jobs.execution import sandbox


def true_spec(base, i, limits):
    """A job-like sandbox for `true`: the instance type's limits, binds like the runner's, and, as for
    a job whose applet asks for no network, a network namespace of its own with the API relayed."""
    work = base / f"bench-true-{i}"
    home, meta, logs = work / "home", work / "meta", work / "log"
    for path in (home, meta, logs):
        path.mkdir(parents=True)
    api = urlparse(settings.DXWEB_API_URL)
    return sandbox.SandboxSpec(
        job_id=f"bench-true-{i}",
        home=home,
        env={"HOME": "/home/dnanexus", "PATH": "/usr/bin:/bin"},
        binds=[
            sandbox.Bind(meta, "/opt/dnanexus/job", writable=True),
            sandbox.Bind(logs, "/opt/dnanexus/log", writable=True),
        ],
        cpus=limits["cpus"],
        memory_mb=limits["memory_mb"],
        workdir=work,
        network=False,
        api=(api.hostname, api.port or 80),
    )


def run_true(spec, argv=("true",)):
    """Launch, wait, check the exit status, remove the sandbox's directory."""
    proc = sandbox.launch(spec, list(argv))
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"sandboxed {argv[0]} exited {code}: {proc.stderr.read()[:500]!r}")
    shutil.rmtree(spec.workdir, ignore_errors=True)
