"""API methods for applets and jobs."""

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q

from dxweb.api import api_method
from dxweb.errors import InvalidInput
from dxweb.validation import get
from projects.api import object_method, tagging_methods
from projects.find import describe_input, page_limit
from projects.models import Level, describe_placement, select_fields
from projects.permissions import access_container

from . import actions
from .logs.store import last_lines
from .models import Analysis, Job, describe_job
from .permissions import access_job
from .querysets import Cursor
from .specs import applet_get_reply
from .workflows.analyses import describe_analysis


@api_method("applet", "new", write=True)
def applet_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    return {"id": actions.new_applet(principal.user, container, body).obj_id}


@object_method("get", Level.VIEW, classes=("applet",))
def applet_get(principal, placement, body):
    return applet_get_reply(describe_placement(placement))


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


# How a find's relation keys read on each kind of execution: a job field, or for analyses (which are
# the root of their tree and have no parent job) ALL when the key asks for none, NONE when for one.
ALL, NONE = "all", "none"
RELATIONS = {
    Job: {"originJob": "origin_id", "parentJob": "parent_id", "parentAnalysis": "analysis_id", "id": "pk"},
    Analysis: {"originJob": NONE, "parentJob": NONE, "parentAnalysis": NONE, "id": "pk", "rootExecution": "pk"},
}


def _executions(principal, body, model):
    """The executions of one model (Job or Analysis) a find's filters select; None when none can match."""
    if body.get("project") is not None:
        found = model.objects.within(project_id=access_container(principal, get(body, "project", str)).pk)
    else:
        found = model.objects.visible_to(principal)
    for key in ("originJob", "rootExecution", "parentJob", "parentAnalysis", "id"):
        if key not in body:
            continue
        value = body[key]
        if value is not None and not isinstance(value, (list, str)):
            raise InvalidInput(f'"{key}" must be an execution ID, an array of them, or null')
        if value is None and key not in ("parentJob", "parentAnalysis"):
            continue  # only parentJob and parentAnalysis: null means something (none)
        if key == "rootExecution" and model is Job:
            ids = value if isinstance(value, list) else [value]
            # A stage job's tree has its analysis at the root.
            found = found.filter(Q(root_id__in=ids) | Q(root__analysis_id__in=ids))
            continue
        field = RELATIONS[model][key]
        if field == NONE:
            if value is not None:
                return None
            continue
        found = found.related(field, value)
    if body.get("state") is not None:
        found = found.in_state(*(body["state"] if isinstance(body["state"], list) else [body["state"]]))
    if body.get("launchedBy") is not None:
        found = found.launched_by(get(body, "launchedBy", str))
    if body.get("executable") is not None:
        found = found.of_executable(get(body, "executable", str))
    if "name" in body:
        found = found.named(body["name"])
    created = get(body, "created", dict, {})
    found = found.created_between(created.get("after"), created.get("before"))
    if body.get("tags") is not None:
        found = found.tagged(body["tags"])
    if body.get("properties") is not None:
        found = found.with_properties(body["properties"])
    return found


def _find_executions(principal, body, models):
    """A find over jobs and/or analyses, newest first, paged by [created, id] across both."""
    wanted, options = describe_input(body)
    io = options.get("io") is not False and not (
        isinstance(options.get("fields"), dict) and options["fields"].get("input") is False
    )
    limit, cursor = page_limit(body), _starting(body)
    rows = []
    try:
        for model in models:
            found = _executions(principal, body, model)
            if found is None:
                continue
            # `starting` is the first execution of its page (the `next` of the page before): inclusive.
            page = found.page(limit, cursor, inclusive=True)
            if model is Job:
                page = page.select_related("project", "launched_by", "failure_from", "root")
            else:
                page = page.select_related("project", "launched_by", "failure_from")
            rows.extend(page)
    except DatabaseError:
        raise InvalidInput("The query could not be evaluated (check name patterns)") from None
    rows.sort(key=lambda row: (row.created, row.pk), reverse=True)

    def render(execution):
        row = {"id": execution.pk}
        if wanted:
            describe = describe_job if isinstance(execution, Job) else describe_analysis
            data = describe(execution, io=io)
            row["describe"] = (
                data if options.get("defaultFields") or "fields" not in options else select_fields(data, options)
            )
        return row

    return {
        "results": [render(row) for row in rows[:limit]],
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
    kinds = {None: (Job, Analysis), "job": (Job,), "analysis": (Analysis,)}
    if body.get("class") not in kinds:
        return {"results": [], "next": None}
    return _find_executions(principal, body, kinds[body.get("class")])


@api_method("system", "findJobs")
def find_jobs(principal, body):
    return _find_executions(principal, body, (Job,))


@api_method("system", "findAnalyses")
def find_analyses(principal, body):
    return _find_executions(principal, body, (Analysis,))
