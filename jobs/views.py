"""Pages for applets and jobs: each view reaches objects through the permission module, calls an action, renders.

Launching goes through jobs.actions.run_applet, the same action as /applet-x/run.
"""

import json
from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dxweb.errors import DXError, InvalidInput, ResourceNotFound
from projects import actions as project_actions
from projects import permissions
from projects.models import Container, DataObject, Level, Placement, now_ms
from projects.permissions import Principal
from projects.views import PAGE_SIZE, placement_in, principal, project_for

from . import actions, holds, scheduler
from . import notifications as job_notifications
from . import permissions as job_permissions
from .apps import actions as app_actions
from .forms import (
    AppletForm,
    LaunchForm,
    PropertiesForm,
    TagsForm,
    applet_initial,
    parse_data_ref,
    parse_properties,
    parse_tags,
    properties_text,
    tags_text,
)
from .models import FINAL_STATES, Job, JobDependency, LogLine, Notification, State
from .specs import DATA_CLASSES, jbor, link_target
from .ssh.terminal import hold_until


def applet_in(request, container, applet_id, needed=Level.VIEW):
    """Return the applet as placed in the project, or raise ResourceNotFound (the 404 page)."""
    return placement_in(request, container, applet_id, needed, cls="applet")


def job_for(request, job_id, needed=Level.VIEW):
    return job_permissions.access_job(principal(request), job_id, needed)


# Applets -----------------------------------------------------------------------------


@login_required
def applets(request, project_id):
    container = project_for(request, project_id)
    placements = Placement.objects.filter(container=container, obj__cls="applet", hidden=False)
    newest = {}
    for p in placements.select_related("obj").order_by("name", "-obj__created", "-pk"):
        newest.setdefault(p.name, p)
    versions = dict(placements.values_list("name").annotate(n=Count("pk")))
    rows = sorted(newest.values(), key=lambda p: p.name.lower())
    for p in rows:
        p.versions = versions[p.name]
    return render(
        request,
        "jobs/applets.html",
        {
            "section": "projects",
            "tab": "applets",
            "project": container,
            "level": container.level,
            "can_create": permissions.reaches(container.level, Level.UPLOAD),
            "applets": rows,
        },
    )


@login_required
def applet(request, project_id, applet_id):
    container = project_for(request, project_id)
    placement = applet_in(request, container, applet_id)
    versions = (
        Placement.objects.filter(container=container, obj__cls="applet", name=placement.name)
        .select_related("obj", "obj__created_by")
        .order_by("-obj__created", "-pk")
    )
    spec = placement.obj.spec
    return render(
        request,
        "jobs/applet.html",
        {
            "section": "projects",
            "tab": "applets",
            "project": container,
            "level": container.level,
            "applet": placement,
            "spec": spec,
            "run_spec": spec.get("runSpec", {}),
            "run_spec_rest": json.dumps({k: v for k, v in spec.get("runSpec", {}).items() if k != "code"}, indent=2),
            "versions": versions,
            "newest": versions[0].obj_id == placement.obj_id,
            "can_create": permissions.reaches(container.level, Level.UPLOAD),
            "can_run": permissions.reaches(container.level, Level.CONTRIBUTE),
            "recent_jobs": Job.objects.filter(project=container, executable=placement.obj_id).order_by("-created")[:10],
        },
    )


@login_required
def applet_new(request, project_id):
    """Create an applet, or (?from=<applet>) a new version of one: applets are immutable."""
    container = project_for(request, project_id, Level.UPLOAD)
    source = applet_in(request, container, request.GET["from"]) if request.GET.get("from") else None
    form = AppletForm(
        request.POST or None,
        request.FILES or None,
        initial=applet_initial(source) if source else {"interpreter": "bash"},
    )
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                placement = actions.new_applet(request.user, container, form.cleaned_data["body"])
        except DXError as err:
            form.add_action_error(err)
        else:
            messages.success(request, f"Created {placement.name} ({placement.obj_id})")
            return redirect("applet", container.pk, placement.obj_id)
    return render(
        request,
        "jobs/applet_form.html",
        {
            "section": "projects",
            "tab": "applets",
            "project": container,
            "level": container.level,
            "form": form,
            "source": source,
        },
    )


# Launching -----------------------------------------------------------------------------


def launched(request, form, run, source=None, page="job"):
    """The launch forms' one flow (applets, apps, workflows). A GET fills the form from `source` (a job:
    ?from=) or from the query; a valid POST runs `run(form)` and lands on the new execution's `page`.
    Returns that redirect, or None: the form is shown again, with its errors."""
    if request.method != "POST":
        if source is not None:
            form.prefill(source)
        else:
            form.prefill_query(request.GET)
        return None
    if not form.is_valid():
        return None
    try:
        execution = run(form)
    except DXError as err:
        form.add_action_error(err)
        return None
    messages.success(request, f"Launched {execution.name} ({execution.pk})")
    return redirect(page, execution.pk)


@login_required
def launch(request, project_id, applet_id):
    """The run form of one applet (pinned to its ID); ?from=<job> starts from that job's launch."""
    container = project_for(request, project_id, Level.CONTRIBUTE if request.method == "POST" else Level.VIEW)
    placement = applet_in(request, container, applet_id)
    client_ip = request.META.get("REMOTE_ADDR", "")
    spec = placement.obj.spec
    form = LaunchForm(
        spec.get("inputSpec"),
        request.POST or None,
        client_ip=client_ip,
        principal=principal(request),
        project=container.pk,
    )
    source = job_for(request, request.GET["from"]) if request.GET.get("from") else None
    done = launched(
        request,
        form,
        lambda form: actions.run_applet(principal(request), placement, form.body(container.pk, placement.obj_id)),
        source,
    )
    if done is not None:
        return done
    return render(
        request,
        "jobs/launch.html",
        {
            "section": "projects",
            "tab": "applets",
            "project": container,
            "level": container.level,
            "applet": placement,
            "spec": spec,
            "form": form,
            "source": source,
            "can_run": permissions.reaches(container.level, Level.CONTRIBUTE),
            "client_ip": client_ip,
        },
        status=422 if form.errors else 200,
    )


@login_required
def file_search(request):
    """Files (or applets, records) the user can VIEW, for the launch forms' picker, at most 20, the
    launching ?project's first, then newest first. ?q is a part of a name; a path (`/folder/na`, in
    ?project), also matching the folders under it; `project-x:` and either of those, in that project;
    or an ID (`file-x`, `project-x:file-x`). With no result, `message` says so in words."""
    klass = request.GET.get("class", "file")
    if klass not in DATA_CLASSES:
        return JsonResponse({"results": [], "message": f"Nothing to pick for {klass}"})
    who = principal(request)
    project = request.GET.get("project", "")
    query = request.GET.get("q", "").strip()
    ref = parse_data_ref(query)
    if ref.object_id:
        try:
            rows = [permissions.access_object(who, ref.object_id, project=ref.project or project, cls=klass)]
        except DXError:
            rows = []
        rows = [p for p in rows if p.obj.state == DataObject.CLOSED and p.obj.cls == klass]
        message = f"No {klass} {ref.object_id} that you can see"
    else:
        found = Placement.objects.filter(
            container_id__in=permissions.visible_projects(who).values("pk"),
            obj__cls=klass,
            obj__state=DataObject.CLOSED,
            hidden=False,
        ).select_related("obj", "container")
        scope = ref.project or (project if ref.folder is not None else "")
        if scope:
            found = found.filter(container_id=scope)
        if ref.folder is None:
            found = found.filter(name__icontains=ref.name)
        else:
            # A path being typed: its last part is a name or the start of a folder under the path.
            top = ref.folder.rstrip("/")
            found = found.filter(Q(folder=ref.folder) | Q(folder__startswith=top + "/"))
            found = found.filter(Q(name__icontains=ref.name) | Q(folder__istartswith=f"{top}/{ref.name}"))
        # The launching project's files first, then the rest, newest first.
        rows = list(found.filter(container_id=project).order_by("-obj__created")[:20]) if project else []
        if len(rows) < 20 and not (scope and scope == project):
            rows += list(found.exclude(container_id=project).order_by("-obj__created")[: 20 - len(rows)])
        place = " in this project" if scope and scope == project else f" in {scope}" if scope else ""
        message = f"No {klass}{place} matches “{query}”" if query else f"No {klass}{place} to pick"
    results = [
        {
            "id": p.obj_id,
            "name": p.name,
            "folder": p.folder,
            "path": f"{p.folder.rstrip('/')}/{p.name}",
            "project": p.container_id,
            "projectName": p.container.name,
            "here": p.container_id == project,
            "size": p.obj.size if klass == "file" else None,
        }
        for p in rows
    ]
    return JsonResponse({"results": results, **({} if results else {"message": message})})


# The job page --------------------------------------------------------------------------------


def shown_value(request, job, value):
    """Describe an input or output value for the page: a file link, a job reference, or JSON."""
    ref = jbor(value)
    if ref is not None:
        return {"kind": "jbor", "job": ref["job"], "field": ref["field"], "index": ref.get("index")}
    target = link_target(value)
    if target is not None:
        item = {"kind": "link", "id": target[0]}
        try:
            placement = permissions.access_object(principal(request), target[0], project=target[1] or job.project_id)
        except DXError:
            return item
        item["name"] = placement.name
        if placement.obj.cls == "file" and placement.container.kind == Container.PROJECT:
            item["url"] = reverse("download", args=[placement.container_id, target[0]])
        elif placement.obj.cls == "applet" and placement.container.kind == Container.PROJECT:
            item["url"] = reverse("applet", args=[placement.container_id, target[0]])
        return item
    if isinstance(value, list) and value and any(jbor(v) or link_target(v) for v in value):
        return {"kind": "list", "items": [shown_value(request, job, v) for v in value]}
    return {"kind": "json", "text": json.dumps(value) if not isinstance(value, str) else value}


def io_rows(request, job, values, spec):
    classes = {field["name"]: field.get("class", "") for field in spec or []}
    return [
        {"name": name, "class": classes.get(name, ""), "value": shown_value(request, job, value)}
        for name, value in (values or {}).items()
    ]


def waiting_reason(job):
    """Say what a job that has not started (or not finished) is waiting for."""
    if job.state == State.RUNNABLE:
        return scheduler.waiting_for(job)
    if job.state == State.IDLE:
        return "Being scheduled"
    stage = {State.WAITING_ON_INPUT: JobDependency.INPUT, State.WAITING_ON_OUTPUT: JobDependency.OUTPUT}.get(job.state)
    if stage is None:
        return ""
    pending = [
        f"{d.on.name} ({d.on_id}) is {d.on.state}"
        for d in JobDependency.objects.filter(job=job, stage=stage).select_related("on").order_by("on__created")
        if d.on.state != State.DONE
    ]
    if job.state == State.WAITING_ON_OUTPUT:
        pending += [f"subjob {c.name} ({c.id}) is {c.state}" for c in job.children.exclude(state=State.DONE)[:20]]
    if not pending:
        return "Its dependencies are done; about to move on"
    what = "input" if stage == JobDependency.INPUT else "output"
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    return f"Waiting on {what}: " + "; ".join(pending[:5]) + more


# The job page shows its tree a page at a time: a scatter of a thousand subjobs stays a small page.
TREE_PAGE_SIZE = 50


def tree_order(origin):
    """The origin's tree in depth-first order as (id, depth, state), from one narrow query."""
    skeleton = list(
        Job.objects.filter(Q(pk=origin.pk) | Q(origin=origin))
        .order_by("created", "pk")
        .values_list("pk", "parent_id", "state")
    )
    ids = {pk for pk, _, _ in skeleton}
    children = {}
    for pk, parent, state in skeleton:
        children.setdefault(parent if pk != origin.pk and parent in ids else None, []).append((pk, state))
    order, stack = [], [(pk, state, 0) for pk, state in reversed(children.get(None, []))]
    while stack:  # iterative: a deep chain of subjobs must not reach Python's recursion limit
        pk, state, depth = stack.pop()
        order.append((pk, depth, state))
        stack += [(child, child_state, depth + 1) for child, child_state in reversed(children.get(pk, []))]
    return order


def job_tree(origin, current, page=None):
    """One page of the origin's tree (the page holding `current` unless one is asked for) and its counts by state."""
    order = tree_order(origin)
    paginator = Paginator(order, TREE_PAGE_SIZE)
    if page is None:
        at = next((i for i, (pk, _, _) in enumerate(order) if pk == current.pk), 0)
        page = at // TREE_PAGE_SIZE + 1
    shown = paginator.get_page(page)
    fields = ("id", "name", "state", "started_running", "stopped_running")
    jobs = Job.objects.only(*fields).in_bulk([pk for pk, _, _ in shown])
    rows = []
    for pk, depth, _ in shown:
        j = jobs[pk]
        j.depth, j.ran = depth, run_time(j)
        rows.append(j)
    counts = {}
    for _, _, state in order:
        counts[state] = counts.get(state, 0) + 1
    return {
        "rows": rows,
        "page": shown,
        "total": len(order),
        "counts": [(state, counts[state]) for state in State.values if state in counts],
    }


def duration_text(ms):
    """A duration for people: "45 s", "3 min 05 s", "2 h 03 min", "1 d 4 h" (job.js says it the same way)."""
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def run_time(job):
    """How long the job ran ("3 min 05 s"), or None while it has not stopped (the page ticks that one)."""
    if job.started_running is None or job.stopped_running is None:
        return None
    return duration_text(job.stopped_running - job.started_running)


def ran_app(request, job):
    """The app version a job ran, if it ran one the user may still see (else None)."""
    if not job.executable.startswith("app-"):
        return None
    try:
        return app_actions.resolve_app(principal(request), job.executable)
    except DXError:
        return None


def launch_url(request, job):
    """The launch form of the applet or app a job ran, if the user can still see it (an applet in a project)."""
    version = ran_app(request, job)
    if version is not None:
        return reverse("app-launch", args=[version.app.name, version.version]) + f"?from={job.pk}"
    try:
        placement = permissions.access_object(principal(request), job.executable, project=job.project_id, cls="applet")
    except DXError:
        return None
    if placement.container.kind != Container.PROJECT:
        return None
    return reverse("launch", args=[placement.container_id, placement.obj_id]) + f"?from={job.pk}"


def executable_url(request, job):
    """The page of what the job ran: its app version's, or its applet's in the job's project."""
    version = ran_app(request, job)
    if version is not None:
        return reverse("app-version", args=[version.app.name, version.version])
    if Placement.objects.filter(container=job.project_id, obj_id=job.executable).exists():
        return reverse("applet", args=[job.project_id, job.executable])
    return None


def rerun_body(job):
    """The /applet-x/run body that launches the job again: its original input and its options."""
    body = {
        "project": job.project_id,
        "name": job.name,
        "input": job.original_input,
        "folder": job.folder,
        "priority": job.priority,
        "tags": list(job.tags),
        "properties": dict(job.properties),
        "details": job.details,
        "delayWorkspaceDestruction": job.delay_workspace_destruction,
    }
    if job.instance_type:
        body["systemRequirements"] = {"*": {"instanceType": job.instance_type}}
    if job.timeout_s:
        minutes = job.timeout_s / 60
        body["timeoutPolicyByExecutable"] = {
            job.executable: {"*": {"minutes": int(minutes) if minutes.is_integer() else minutes}}
        }
    if job.debug.get("debugOn"):
        body["debug"] = {"debugOn": job.debug["debugOn"]}
    if job.allow_ssh:
        body["allowSSH"] = list(job.allow_ssh)
    return body


@login_required
def job(request, job_id):
    job = job_for(request, job_id)
    origin = job.origin or job
    who = debugger(request)
    held = job.state == State.DEBUG_HOLD
    relaunch = launch_url(request, origin) if job.pk == origin.pk and not job.parent_id else None
    return render(
        request,
        "jobs/job.html",
        {
            "section": "jobs",
            "job": job,
            "project": job.project,
            "level": job.level,
            "can_change": permissions.reaches(job.level, Level.CONTRIBUTE),
            "can_terminate": permissions.reaches(job.level, Level.CONTRIBUTE)
            and Job.objects.filter(Q(pk=origin.pk) | Q(origin=origin)).exclude(state__in=FINAL_STATES).exists(),
            "is_final": job.is_final,
            "ran": run_time(job),
            "server_now": now_ms(),  # the page's clocks (elapsed, the hold's countdown) correct for the browser's
            "inputs": io_rows(request, job, job.original_input, job.spec.get("inputSpec")),
            "outputs": io_rows(request, job, job.output, job.spec.get("outputSpec")) if job.output else [],
            "waiting": waiting_reason(job),
            "tree": job_tree(origin, job, request.GET.get("tree_page")),
            "relaunch": relaunch,
            "rerun_url": reverse("job-rerun", args=[job.pk]) if relaunch else None,
            "executable_url": executable_url(request, job),
            "is_app": job.executable.startswith("app-"),
            # Debug and the hold's buttons only for those the debug policy lets use them (jobs.permissions).
            "can_debug": (held or (job.state == State.RUNNING and bool(job.allow_ssh)))
            and job_permissions.may_open_shell(who, job),
            "held": held,
            "hold_until": hold_until(job),
            "may_open_shell": held and job_permissions.may_open_shell(who, job),
            "may_change_hold": held and job_permissions.may_change_hold(who, job),
            "tags_form": TagsForm(initial={"tags": tags_text(job.tags)}),
            "properties_form": PropertiesForm(initial={"properties": properties_text(job.properties)}),
            "levels": ["STDOUT", "STDERR", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
            "ssh_sessions": job.ssh_sessions.select_related("user").order_by("-started")[:50],
        },
    )


@login_required
def job_log(request, job_id):
    """The whole log as text, streamed from the store (?tree=1: the tree's logs merged, with job names)."""
    job = job_for(request, job_id)
    if request.GET.get("tree"):
        origin = job.origin or job
        names = dict(Job.objects.filter(Q(pk=origin.pk) | Q(origin=origin)).values_list("id", "name"))
        lines = LogLine.objects.filter(job_id__in=list(names)).order_by("timestamp", "job_id", "seq")
    else:
        names = None
        lines = LogLine.objects.filter(job=job).order_by("seq")

    def render_lines():
        # Blocks of lines, not single lines: under ASGI each chunk of a sync iterator costs a thread hop.
        block = []
        for line in lines.iterator(chunk_size=2000):
            stamp = datetime.fromtimestamp(line.timestamp / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
            who = f"{names[line.job_id]} " if names else ""
            block.append(f"{stamp} {who}{line.level} {line.msg}\n")
            if len(block) == 2000:
                yield "".join(block)
                block = []
        yield "".join(block)

    response = StreamingHttpResponse(render_lines(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{job.pk}.log"'
    return response


def job_action(fn):
    """Wrap a form POST on a job: CONTRIBUTE on its project, the action in a transaction, a flash, back."""

    @login_required
    @require_POST
    def view(request, job_id):
        job = job_for(request, job_id, Level.CONTRIBUTE)
        try:
            with transaction.atomic():
                messages.success(request, fn(request, job))
        except DXError as err:
            messages.error(request, err.message)
        return redirect("job", job.pk)

    view.__name__ = fn.__name__
    return view


@job_action
def job_terminate(request, job):
    actions.terminate(principal(request), job)
    return f"Terminating {job.name} and its subjobs"


@job_action
def job_tags(request, job):
    tags = parse_tags(request.POST.get("tags", ""))
    project_actions.change_tags(job, remove=list(job.tags))
    project_actions.change_tags(job, add=tags)
    return "Saved the tags"


@job_action
def job_properties(request, job):
    wanted, errors = parse_properties(request.POST.get("properties", ""))
    if errors:
        raise InvalidInput(errors[0], field="properties")
    project_actions.set_properties(job, {**{k: None for k in job.properties}, **wanted})
    return "Saved the properties"


@login_required
@require_POST
def job_rerun(request, job_id):
    """Run an origin job's applet (or app) again with the same input and options; land on the new job's page."""
    job = job_for(request, job_id, Level.CONTRIBUTE)
    if job.parent_id or (job.origin_id and job.origin_id != job.pk):
        messages.error(request, "Only a job launched from an applet can be rerun; rerun its origin job")
        return redirect("job", job.pk)
    version = ran_app(request, job)
    try:
        if version is None:
            placement = permissions.access_object(
                principal(request), job.executable, project=job.project_id, cls="applet"
            )
            if placement.container.kind != Container.PROJECT:
                raise ResourceNotFound(f"The applet {job.executable} is in no project you can see")
    except ResourceNotFound:
        what = "app" if job.executable.startswith("app-") else "applet"
        messages.error(request, f"Cannot rerun {job.name}: its {what} {job.executable} is gone")
        return redirect("job", job.pk)
    except DXError as err:
        messages.error(request, f"Cannot rerun {job.name}: {err.message}")
        return redirect("job", job.pk)
    try:
        with transaction.atomic():
            if version is not None:
                new = app_actions.run_app(principal(request), version, rerun_body(job))
            else:
                new = actions.run_applet(principal(request), placement, rerun_body(job))
    except DXError as err:
        messages.error(request, f"Cannot rerun {job.name}: {err.message}")
        return redirect("job", job.pk)
    messages.success(request, f"Launched {new.name} ({new.id}) again with the input of {job.pk}")
    return redirect("job", new.pk)


# The debug terminal ----------------------------------------------------------------------------


def debugger(request):
    """The requester with their address, which access_debug checks against the job's allowSSH."""
    return Principal(user=request.user, client_ip=request.META.get("REMOTE_ADDR", ""), request=request)


@login_required
def job_debug(request, job_id):
    try:
        job = job_permissions.access_debug(debugger(request), job_id)
    except job_permissions.AddressNotAllowed as err:
        # The one refusal the user can lift from here: offer to add their address, as `dx ssh` would.
        job = job_permissions.access_job(debugger(request), job_id)
        return render(
            request,
            "jobs/debug_allow.html",
            {
                "section": "jobs",
                "job": job,
                "project": job.project,
                "message": err.message,
                "client_ip": request.META.get("REMOTE_ADDR", ""),
            },
            status=403,
        )
    return render(
        request,
        "jobs/terminal.html",
        {
            "section": "jobs",
            "job": job,
            "project": job.project,
            "hold_until": hold_until(job),
            "ws_path": f"/ws/jobs/{job.pk}/terminal/",
        },
    )


def attempted(request, action, job_id):
    """Run a debug action (jobs.actions) for the requester: 404 for outsiders, None (the refusal
    shown as a message) when it is not allowed."""
    try:
        return action(debugger(request), job_id)
    except ResourceNotFound:
        raise  # the 404 page
    except DXError as err:
        messages.error(request, err.message)
        return None


@login_required
@require_POST
def job_allow_ssh(request, job_id):
    job = attempted(request, actions.allow_ssh_from, job_id)
    if job is None:
        return redirect("job", job_id)
    messages.success(request, f"SSH to {job.name} is now allowed from {request.META.get('REMOTE_ADDR', '')}")
    return redirect("job-debug", job_id)


def back_from_hold(request):
    """Where a hold's button leads back to: the job page's banner posts back=job, the terminal nothing."""
    return "job" if request.POST.get("back") == "job" else "job-debug"


@login_required
@require_POST
def job_hold_extend(request, job_id):
    job = attempted(request, holds.extend_hold, job_id)
    if job is not None:
        left = max(0, (hold_until(job) or 0) - now_ms()) // 60000
        messages.success(request, f"Extended the hold of {job.name}: {left // 60} h {left % 60:02d} min left")
    return redirect(back_from_hold(request), job_id)


@login_required
@require_POST
def job_hold_release(request, job_id):
    job = attempted(request, holds.release_hold, job_id)
    if job is None:
        return redirect(back_from_hold(request), job_id)
    messages.success(request, f"Released the hold of {job.name}: it is now {job.state}")
    return redirect("job", job.pk)


# Notifications -----------------------------------------------------------------------------------


@login_required
def notifications(request):
    """The user's notices (their own only), newest first, a batch's notices as one line; they stay unread
    until marked read (jobs/notices.py), one, a batch or all at once."""
    notices = Notification.objects.filter(user=request.user).select_related("job", "job__analysis")
    page = Paginator(notices, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/notifications.html",
        {
            "section": "notifications",
            "page": page,
            "batches": job_notifications.batches(page.object_list),
        },
    )
