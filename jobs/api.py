"""API methods for applets and jobs."""
from django.db import DatabaseError
from django.db.models import Q

from dxweb.api import api_method
from dxweb.errors import InvalidInput
from dxweb.validation import get, string_list
from projects import actions as project_actions
from projects.api import _describe_input as describe_input
from projects.api import _name_matcher as name_matcher
from projects.api import _property_match as property_match
from projects.api import _tag_match as tag_match
from projects.api import _visible_container_ids as visible_container_ids
from projects.api import object_method, tagging_methods
from projects.models import Level, select_fields
from projects.permissions import access_container, check_level

from . import actions
from .models import Job, describe_job

@api_method("applet", "new", write=True)
def applet_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    return {"id": actions.new_applet(principal.user, container, body).obj_id}


@object_method("get", Level.VIEW, classes=("applet",))
def applet_get(principal, placement, body):
    spec = placement.obj.spec
    return {key: spec[key] for key in ("runSpec", "inputSpec", "outputSpec", "dxapi", "access", "title",
                                       "summary", "description") if key in spec}


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
            job = actions.access_job(principal, job_id)
            if needed > Level.VIEW:
                check_level(principal, job.project_id, needed)
            return fn(principal, job, body)

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
    if "allowSSH" in body:
        job.allow_ssh = string_list(body, "allowSSH")
    if "name" in body:
        job.name = project_actions.clean_name(get(body, "name", str))
    job.save(update_fields=["allow_ssh", "name"])
    return {"id": job.id}


def _find_jobs(principal, body):
    qs = Job.objects.select_related("project", "launched_by", "failure_from").order_by("-created", "pk")
    if body.get("project") is not None:
        qs = qs.filter(project=access_container(principal, get(body, "project", str)))
    else:
        qs = qs.filter(project_id__in=visible_container_ids(principal))
    for key, field in (("originJob", "origin_id"), ("rootExecution", "root_id"), ("parentJob", "parent_id"),
                       ("id", "pk")):
        if key in body:
            value = body[key]
            if value is None:
                qs = qs.filter(**{f"{field}__isnull": True}) if key == "parentJob" else qs
            elif isinstance(value, list):
                qs = qs.filter(**{f"{field}__in": value})
            elif isinstance(value, str):
                qs = qs.filter(**{field: value})
            else:
                raise InvalidInput(f'"{key}" must be a job ID, an array of them, or null')
    if body.get("state") is not None:
        states = body["state"] if isinstance(body["state"], list) else [body["state"]]
        qs = qs.filter(state__in=states)
    if body.get("launchedBy") is not None:
        qs = qs.filter(launched_by__username=get(body, "launchedBy", str).removeprefix("user-"))
    if body.get("executable") is not None:
        qs = qs.filter(executable=get(body, "executable", str))
    if "name" in body:
        qs = qs.filter(name_matcher(body["name"]))
    created = get(body, "created", dict, {})
    if "after" in created:
        qs = qs.filter(created__gte=created["after"])
    if "before" in created:
        qs = qs.filter(created__lte=created["before"])
    tags, props = body.get("tags"), body.get("properties")
    wanted, options = describe_input(body)
    io = not (isinstance(options.get("fields"), dict) and options["fields"].get("input") is False)

    def predicate(job):
        return (tags is None or tag_match(job.tags, tags)) and (props is None or property_match(job.properties, props))

    def render(job):
        row = {"id": job.id}
        if wanted:
            data = describe_job(job, io=io)
            row["describe"] = data if options.get("defaultFields") or "fields" not in options else select_fields(data, options)
        return row

    return _paginate_newest_first(qs, body, predicate, render)


def _paginate_newest_first(qs, body, predicate, render):
    """Pages of jobs, newest first; `next` is [created, id] of the first job of the next page."""
    limit = min(get(body, "limit", int, 1000), 1000)
    if limit < 1:
        raise InvalidInput('"limit" must be a positive integer')
    starting = body.get("starting")
    if starting is not None:
        if not (isinstance(starting, list) and len(starting) == 2 and isinstance(starting[0], int)
                and isinstance(starting[1], str)):
            raise InvalidInput('"starting" must be the "next" value of a previous reply')
        qs = qs.filter(Q(created__lt=starting[0]) | Q(created=starting[0], pk__gte=starting[1]))
    results, next_key = [], None
    try:
        for job in qs.iterator(chunk_size=500):
            if not predicate(job):
                continue
            if len(results) == limit:
                next_key = [job.created, job.id]
                break
            results.append(render(job))
    except DatabaseError:
        raise InvalidInput("The query could not be evaluated (check name patterns)") from None
    return {"results": results, "next": next_key}


@api_method("system", "findExecutions")
def find_executions(principal, body):
    if body.get("class") not in (None, "job"):
        return {"results": [], "next": None}
    return _find_jobs(principal, body)


@api_method("system", "findJobs")
def find_jobs(principal, body):
    return _find_jobs(principal, body)
