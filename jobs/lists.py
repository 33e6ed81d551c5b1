"""The job lists (a project's jobs, My jobs): filters read from the list indexes, keyset pages, and analyses
as rows with their stage jobs under them."""

from datetime import UTC, datetime, time

from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.shortcuts import render
from django.urls import reverse

from projects import permissions
from projects.models import now_ms
from projects.views import PAGE_SIZE, principal, project_for

from .forms import JobFilterForm
from .models import Analysis, Job
from .querysets import Cursor
from .views import run_time


def _filtered(model, form, **scope):
    """The jobs or analyses of a list's scope (field lookups: the project, or the launcher and visible
    projects) that pass a JobFilterForm's filters: every one is read from the list indexes (jobs.querysets)."""
    if not form.is_valid():
        return model.objects.filter(**scope)
    data = form.cleaned_data
    found = model.objects.within(data["name"], **scope)
    if data["state"]:
        found = found.in_state(data["state"])
    if data["tag"]:
        found = found.tagged(data["tag"])  # exact
    if data["launcher"]:
        found = found.launched_by(data["launcher"].strip())
    after = before = None
    if data["after"]:
        after = int(datetime.combine(data["after"], time.min, UTC).timestamp() * 1000)
    if data["before"]:
        before = int(datetime.combine(data["before"], time.max, UTC).timestamp() * 1000)
    return found.created_between(after, before)


def filtered_jobs(form, **scope):
    jobs = _filtered(Job, form, **scope)
    return jobs.origins_only() if form.is_valid() and form.cleaned_data["origin"] else jobs


def filtered_analyses(form, **scope):
    """Analyses pass the same filters; they are roots, so "origin only" keeps them all."""
    return _filtered(Analysis, form, **scope)


# What a job list shows: its rows load only these (a job's input, output and spec can be large).
LIST_FIELDS = (
    "id",
    "name",
    "state",
    "parent_id",
    "project_id",
    "project__name",
    "executable_name",
    "function",
    "launched_by_id",
    "launched_by__username",
    "created",
    "tags",
    "analysis_id",
    "stage",
    "started_running",
    "stopped_running",
)
ANALYSIS_LIST_FIELDS = (
    "id",
    "name",
    "state",
    "project_id",
    "project__name",
    "executable_name",
    "launched_by_id",
    "launched_by__username",
    "created",
    "tags",
)


def keyset_page(request, qs, analyses=None):
    """One page newest first, after the ?cursor of the previous page: no OFFSET and no COUNT over the table.

    With `analyses` (a queryset of them), analyses are rows too, in the same order, each followed by its
    stage jobs (which then leave their own place in the list).
    """
    # The page's moment, to the millisecond, taken before its rows: its socket counts jobs created after it
    # ("n new jobs since this page opened"). Whole seconds would count the jobs of the second before.
    since = now_ms()
    cursor = request.GET.get("cursor", "")
    # ?cursor=<created>.<id> of the last row of the page before.
    created, _, job_id = cursor.partition(".")
    after = Cursor(int(created), job_id) if created.isdigit() and job_id else None
    rows = list(qs.page(PAGE_SIZE, after).select_related("launched_by", "project").only(*LIST_FIELDS))
    if analyses is not None:
        page = analyses.page(PAGE_SIZE, after).select_related("launched_by", "project")
        rows += page.only(*ANALYSIS_LIST_FIELDS)
        rows.sort(key=lambda row: (row.created, row.pk), reverse=True)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    last = rows[-1] if rows else None
    rows = _nest_stage_jobs(rows)
    # Per-row work done once here, not by template filters and tags a hundred times over.
    link = reverse("job", args=["JOB"])
    analysis_link = reverse("analysis", args=["ANALYSIS"])
    project_link = reverse("project-jobs", args=["PROJECT"])
    for row in rows:
        moment = datetime.fromtimestamp(row.created / 1000, UTC)
        row.created_iso = moment.isoformat()
        row.created_full = moment.strftime("%Y-%m-%d %H:%M:%S")
        row.created_short = moment.strftime("%Y-%m-%d %H:%M")
        row.url = analysis_link.replace("ANALYSIS", row.pk) if row.is_analysis else link.replace("JOB", row.pk)
        row.project_url = project_link.replace("PROJECT", row.project_id)
        row.duration = None if row.is_analysis else run_time(row)
    params = request.GET.copy()
    params.pop("cursor", None)
    next_url = None
    if more:
        params["cursor"] = f"{last.created}.{last.pk}"
        next_url = "?" + params.urlencode()
        params.pop("cursor")
    first_url = "?" + params.urlencode() if cursor else None
    return {"jobs": rows, "next_url": next_url, "first_url": first_url, "since": since}


def _nest_stage_jobs(rows):
    """The rows with each analysis's stage jobs right under it (`stage_rows`), not in their own place."""
    analyses = {row.pk: row for row in rows if isinstance(row, Analysis)}
    for row in rows:
        row.is_analysis = isinstance(row, Analysis)
        row.stage_rows = []
    if not analyses:
        return rows
    stage_jobs = (
        Job.objects.filter(analysis_id__in=list(analyses), origin_id=F("pk"))
        .select_related("launched_by", "project")
        .only(*LIST_FIELDS)
        .order_by("created", "pk")
    )
    link = reverse("job", args=["JOB"])
    for job in stage_jobs:
        job.url = link.replace("JOB", job.pk)
        job.duration = run_time(job)
        analyses[job.analysis_id].stage_rows.append(job)
    return [row for row in rows if row.is_analysis or row.analysis_id not in analyses]


@login_required
def project_jobs(request, project_id):
    container = project_for(request, project_id)
    form = JobFilterForm(request.GET or None)
    qs = filtered_jobs(form, project_id=container.pk)
    analyses = filtered_analyses(form, project_id=container.pk)
    return render(
        request,
        "jobs/jobs.html",
        {
            "section": "projects",
            "tab": "jobs",
            "project": container,
            "level": container.level,
            "form": form,
            "ws_path": f"/ws/projects/{container.pk}/jobs/",
            **keyset_page(request, qs, analyses),
        },
    )


@login_required
def my_jobs(request):
    form = JobFilterForm(request.GET or None)
    visible = permissions.visible_container_ids(principal(request))
    qs = filtered_jobs(form, launched_by_id=request.user.pk, project_id__in=visible)
    analyses = filtered_analyses(form, launched_by_id=request.user.pk, project_id__in=visible)
    return render(
        request,
        "jobs/jobs.html",
        {
            "section": "jobs",
            "form": form,
            "ws_path": "/ws/jobs/mine/",
            "mine": True,
            **keyset_page(request, qs, analyses),
        },
    )
