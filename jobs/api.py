"""API methods for applets and jobs."""

from django.conf import settings
from django.db import DatabaseError

from dxweb.api import api_method
from dxweb.errors import InvalidInput
from dxweb.validation import get
from projects.api import object_method, tagging_methods
from projects.find import describe_input, page_limit
from projects.models import Level, select_fields
from projects.permissions import access_container

from . import actions
from .logs.store import last_lines
from .models import Job, describe_job
from .permissions import access_job
from .querysets import Cursor


@api_method("applet", "new", write=True)
def applet_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    return {"id": actions.new_applet(principal.user, container, body).obj_id}


@object_method("get", Level.VIEW, classes=("applet",))
def applet_get(principal, placement, body):
    spec = placement.obj.spec
    return {
        key: spec[key]
        for key in ("runSpec", "inputSpec", "outputSpec", "dxapi", "access", "title", "summary", "description")
        if key in spec
    }


@object_method("run", Level.VIEW, write=False, classes=("applet",))
def applet_run(principal, placement, body):
    return {"id": actions.run_applet(principal, placement, body).id}


@api_method("job", "new")
def job_new(principal, body):
    return {"id": actions.new_subjob(principal, body).id}


def job_method(name, needed=Level.VIEW, write=False):
    """Register /job-x/<name>; the job is reached through its project's permissions."""

    def register(fn):
        def handler(principal, job_id, body):
            return fn(principal, access_job(principal, job_id, needed), body)

        api_method("job", name, write=write)(handler)
        return fn

    return register


@job_method("describe")
def job_describe(principal, job, body):
    return select_fields(describe_job(job, io=get(body, "io", bool, True)), body)


@job_method("terminate", Level.CONTRIBUTE, write=True)
def job_terminate(principal, job, body):
    actions.terminate(principal, job)
    return {"id": job.id}


tagging_methods(job_method, lambda job: job.id)


@job_method("update", Level.CONTRIBUTE, write=True)
def job_update(principal, job, body):
    return {"id": actions.update_job(principal, job, body).id}


@job_method("getLog")
def job_get_log(principal, job, body):
    """The job's log so far, each line a `dx watch` frame; past DXWEB_GETLOG_MAX_LINES, its last lines."""
    lines, truncated = last_lines(job, settings.DXWEB_GETLOG_MAX_LINES)
    return {"loglines": [line.to_frame(job.name) for line in lines], "truncated": truncated}


def _find_jobs(principal, body):
    if body.get("project") is not None:
        jobs = Job.objects.within(project_id=access_container(principal, get(body, "project", str)).pk)
    else:
        jobs = Job.objects.visible_to(principal)
    for key, field in (
        ("originJob", "origin_id"),
        ("rootExecution", "root_id"),
        ("parentJob", "parent_id"),
        ("id", "pk"),
    ):
        if key in body:
            value = body[key]
            if value is not None and not isinstance(value, (list, str)):
                raise InvalidInput(f'"{key}" must be a job ID, an array of them, or null')
            if value is not None or key == "parentJob":  # only parentJob: null means something (no parent)
                jobs = jobs.related(field, value)
    if body.get("state") is not None:
        jobs = jobs.in_state(*(body["state"] if isinstance(body["state"], list) else [body["state"]]))
    if body.get("launchedBy") is not None:
        jobs = jobs.launched_by(get(body, "launchedBy", str))
    if body.get("executable") is not None:
        jobs = jobs.of_executable(get(body, "executable", str))
    if "name" in body:
        jobs = jobs.named(body["name"])
    created = get(body, "created", dict, {})
    jobs = jobs.created_between(created.get("after"), created.get("before"))
    wanted, options = describe_input(body)
    io = not (isinstance(options.get("fields"), dict) and options["fields"].get("input") is False)
    limit, cursor = page_limit(body), _starting(body)
    if body.get("tags") is not None:
        jobs = jobs.tagged(body["tags"])
    if body.get("properties") is not None:
        jobs = jobs.with_properties(body["properties"])

    def render(job):
        row = {"id": job.id}
        if wanted:
            data = describe_job(job, io=io)
            row["describe"] = (
                data if options.get("defaultFields") or "fields" not in options else select_fields(data, options)
            )
        return row

    try:
        # `starting` is the first job of its page (the `next` of the page before): inclusive.
        rows = list(jobs.page(limit, cursor, inclusive=True).select_related("project", "launched_by", "failure_from"))
    except DatabaseError:
        raise InvalidInput("The query could not be evaluated (check name patterns)") from None
    return {
        "results": [render(job) for job in rows[:limit]],
        "next": [rows[limit].created, rows[limit].pk] if len(rows) > limit else None,
    }


def _starting(body):
    """The cursor a find's `starting` gives: the `next` of a previous reply, [created, id] of a job."""
    starting = body.get("starting")
    if starting is None:
        return None
    if not (
        isinstance(starting, list)
        and len(starting) == 2
        and isinstance(starting[0], int)
        and isinstance(starting[1], str)
    ):
        raise InvalidInput('"starting" must be the "next" value of a previous reply')
    return Cursor(*starting)


@api_method("system", "findExecutions")
def find_executions(principal, body):
    if body.get("class") not in (None, "job"):
        return {"results": [], "next": None}
    return _find_jobs(principal, body)


@api_method("system", "findJobs")
def find_jobs(principal, body):
    return _find_jobs(principal, body)
