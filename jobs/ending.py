"""Ending jobs that no run of theirs will end: a destroyed project's, and those whose worker vanished.

Each ends them through jobs.actions (terminate, transition, fail), as every state change goes.
"""

import time

from django.conf import settings
from django.db import models, transaction

from dxweb import sql
from dxweb.errors import InvalidState
from projects import actions as project_actions
from projects.models import ApiToken, Container

from . import dispatch
from .actions import fail, terminate, transition
from .logs.store import append_line
from .models import FINAL_STATES, Job, State

# Destroying a project (projects.actions.destroy_project; connected in jobs/apps.py) --------------


def end_project_jobs(sender, principal, container, terminate_jobs, **kwargs):
    """Before a project is destroyed: refuse while it has unfinished jobs, unless `terminate_jobs`.

    Their trees are then terminated as /job-x/terminate does, and the records are deleted only once
    each running job's worker, which notices within a heartbeat, has killed its sandbox and recorded
    it terminated (which revokes its token and removes its workspace): no worker is left running or
    logging a job that no longer exists.
    """
    unfinished = Job.objects.filter(project=container).exclude(state__in=FINAL_STATES)
    if unfinished.exists():
        if not terminate_jobs:
            raise InvalidState(
                f"{container.pk} has unfinished jobs; terminate them first, or destroy it with terminateJobs"
            )
        with transaction.atomic():
            _terminate_trees(principal, unfinished)
        deadline = time.monotonic() + 4 * settings.DXWEB_HEARTBEAT_SECONDS + 2
        while unfinished.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def settle_project_jobs(sender, principal, container, **kwargs):
    """In the transaction that destroys a project: end what is left of its jobs, and return the
    workspaces to destroy with it."""
    unfinished = Job.objects.filter(project=container).exclude(state__in=FINAL_STATES)
    # Jobs started meanwhile, and those whose worker did not answer in time (stalled or gone):
    # recorded terminated, as the reaper records them; such a worker kills the sandbox at its
    # next heartbeat, which finds the job gone.
    _terminate_trees(principal, unfinished)
    for job_id in unfinished.filter(state=State.TERMINATING).values_list("pk", flat=True):
        transition(job_id, State.TERMINATED, expected=[State.TERMINATING])
    workspaces = set(Job.objects.filter(project=container).values_list("workspace_id", flat=True))
    # Those kept after their jobs ended (delayWorkspaceDestruction) would have no job left to remove them.
    return list(Container.objects.filter(pk__in=workspaces, kind=Container.WORKSPACE))


def _terminate_trees(principal, jobs):
    """Terminate the job trees `jobs` belong to, each once (a second terminate of a tree would
    record its terminating jobs terminated without waiting for their workers)."""
    trees = {}
    for job in jobs.exclude(state=State.TERMINATING):
        trees.setdefault(job.origin_id or job.pk, job)
    for job in trees.values():
        try:
            terminate(principal, job)
        except InvalidState:
            pass  # the tree ended meanwhile


# The reaper --------------------------------------------------------------------------------


def reap(now=None):
    """Recover from vanished workers and lost wake-ups; return what was done, for logs and tests.

    A running job whose lease lapsed is retried (within DXWEB_MAX_TRIES, with a line in its
    log saying why) or failed with ExecutionError; a terminating one is recorded terminated; a
    runnable job nobody claimed is woken again (claims are idempotent, so a spare wake-up is harmless).

    A worker's lease is taken from it only once it lapsed by more than one heartbeat period: a
    worker that is merely slow renews it first, and one that stalled (and still runs its copy of
    the job) finds the lease gone at its first heartbeat after waking and kills that copy.
    """
    now = now or sql.database_now_ms()  # the clock heartbeats are written in
    lapsed = now - settings.DXWEB_LEASE_SECONDS * 1000
    expired = lapsed - round(settings.DXWEB_HEARTBEAT_SECONDS * 1000)
    report = {"retried": [], "failed": [], "terminated": [], "woken": [], "workspaces": []}
    for job in Job.objects.filter(
        state__in=[State.RUNNING, State.TERMINATING, State.DEBUG_HOLD], heartbeat__lt=expired
    ):
        # Act only if the lease is still lapsed when we swap: a worker that renewed it since keeps its job.
        still_lapsed = {"heartbeat__lt": expired}
        silent = (
            f"worker {job.worker} stopped renewing this job's lease (last heartbeat "
            f"{(now - job.heartbeat) / 1000:.1f} s ago, the lease is {settings.DXWEB_LEASE_SECONDS} s)"
        )
        if job.state == State.DEBUG_HOLD:
            # Its sandbox died with its worker: nothing is left to debug.
            reason = job.debug.get("failureReason") or "ExecutionError"
            message = (
                f"{job.debug.get('failureMessage', '')} (the worker holding this job for debugging, "
                f"{job.worker}, stopped renewing its lease)"
            ).strip()
            if fail(job, reason, message, only_if=still_lapsed):
                report["failed"].append(job.pk)
        elif job.state == State.TERMINATING:
            if transition(job.pk, State.TERMINATED, expected=[State.TERMINATING], only_if=still_lapsed):
                report["terminated"].append(job.pk)
        elif job.tries < settings.DXWEB_MAX_TRIES:
            if transition(
                job.pk, State.RUNNABLE, expected=[State.RUNNING], only_if=still_lapsed, worker="", heartbeat=None
            ):
                ApiToken.objects.filter(pk=job.token_id).delete()
                append_line(
                    job.pk,
                    "WARNING",
                    f"Retrying: {silent}; try {job.tries} → try {job.tries + 1} "
                    f"(of at most {settings.DXWEB_MAX_TRIES})",
                )
                transaction.on_commit(lambda job_id=job.pk: dispatch.run_job(job_id))
                report["retried"].append(job.pk)
        else:
            message = (
                f"The worker running this job ({job.worker}) stopped renewing its lease; "
                f"gave up after {job.tries} tries"
            )
            if fail(job, "ExecutionError", message, only_if=still_lapsed):
                append_line(
                    job.pk,
                    "ERROR",
                    f"Not retried: {silent}; try {job.tries} was the last of at most {settings.DXWEB_MAX_TRIES}",
                )
                report["failed"].append(job.pk)
    # A runnable job left unclaimed for a lease has likely lost its message (a worker died holding
    # it): send another. `heartbeat` of a runnable job records the last such wake-up, and they back
    # off (at ages of 1, 2, 4, 8... leases) so a long queue is not flooded with copies every tick.
    unclaimed = Job.objects.filter(state=State.RUNNABLE, modified__lt=lapsed).filter(
        models.Q(heartbeat__isnull=True) | models.Q(heartbeat__lt=(models.F("modified") + now) / 2)
    )
    for job_id in unclaimed.values_list("pk", flat=True):
        if Job.objects.filter(pk=job_id, state=State.RUNNABLE).update(heartbeat=now) == 1:
            transaction.on_commit(lambda job_id=job_id: dispatch.run_job(job_id))
            report["woken"].append(job_id)
    report["workspaces"] = destroy_idle_workspaces()
    return report


def destroy_idle_workspaces(limit=1000):
    """Destroy, together, the workspaces of execution trees that have all ended; return their IDs.

    A worker leaves the workspace of a job it ran to this (jobs.actions._on_final): one batch per
    reap costs a few statements for all of them, where destroying each at once cost about a dozen
    per job. Workspaces kept by delayWorkspaceDestruction stay, as before.
    """
    unfinished = Job.objects.filter(workspace_id=models.OuterRef("pk")).exclude(state__in=FINAL_STATES)
    kept = Job.objects.filter(workspace_id=models.OuterRef("pk"), delay_workspace_destruction=True)
    idle = (
        Container.objects.filter(kind=Container.WORKSPACE, workspace_jobs__isnull=False)
        .filter(~models.Exists(unfinished), ~models.Exists(kept))
        .values_list("pk", flat=True)
        .distinct()
    )
    with transaction.atomic():
        ids = list(idle[:limit])
        if ids:
            project_actions.destroy_containers(ids)
    return ids
