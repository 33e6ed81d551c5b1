"""Debug holds: a job kept, after its code failed, for its launcher to look into (`dx ssh`, the browser
terminal), until it is released, its hold time is up, or it is terminated."""

from django.conf import settings

from dxweb.errors import InvalidState
from projects.models import now_ms

from .actions import end_tree, fail, transition
from .models import Job, State
from .permissions import access_hold


def _held(principal, job_id):
    job = access_hold(principal, job_id)
    if job.state != State.DEBUG_HOLD:
        raise InvalidState(f"{job.id} is {job.state}, not held for debugging")
    return job


def extend_hold(principal, job_id):
    """Push the end of a debug hold to DXWEB_DEBUG_HOLD_SECONDS from now."""
    job = _held(principal, job_id)
    debug = {**job.debug, "holdUntil": now_ms() + settings.DXWEB_DEBUG_HOLD_SECONDS * 1000}
    if Job.objects.filter(pk=job.pk, state=State.DEBUG_HOLD).update(debug=debug, modified=now_ms()) != 1:
        raise InvalidState(f"{job.id} is no longer held for debugging")
    job.debug = debug
    return job


def release_hold(principal, job_id):
    """End a debug hold now: the job fails with the failure it was held for (its worker then cleans up)."""
    job = _held(principal, job_id)
    end_hold(job, f"The debug hold was released by {principal.user.dx_id}")
    return Job.objects.get(pk=job.pk)


def end_hold(job, why):
    """End a held job: failed with its held failure, or terminated if it held through /.dx-hold."""
    job = Job.objects.get(pk=job.pk)
    reason, message = job.debug.get("failureReason"), job.debug.get("failureMessage", "")
    if reason:
        return fail(job, reason, f"{message} ({why})")
    if transition(
        job.pk, State.TERMINATED, expected=[State.DEBUG_HOLD], failure_reason="Terminated", failure_message=why
    ):
        end_tree(job.origin or job, "Terminated", f"Terminated because {job.id} ended its debug hold")
        return True
    return False
