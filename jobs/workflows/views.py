"""Pages for workflows and analyses: the project's workflows, a workflow's graph and builder, its launch
form, and an analysis's live graph. Every change goes through jobs.workflows.editing or analyses, the
same actions as the API; objects are reached through the permission modules."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import F
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dxweb.errors import DXError, ResourceNotFound
from projects import permissions
from projects.models import DataObject, Level, Placement
from projects.views import placement_in, principal, project_for

from ..models import Analysis
from ..permissions import access_analysis
from ..views import io_rows, launched
from . import analyses, editing, graph
from . import stages as st
from .forms import (
    AddStageForm,
    BindForm,
    EditForm,
    MoveStageForm,
    NewWorkflowForm,
    RemoveStageForm,
    RenameStageForm,
    WorkflowLaunchForm,
)


def workflow_in(request, container, workflow_id, needed=Level.VIEW):
    """The workflow as placed in the project, or ResourceNotFound (the 404 page)."""
    return placement_in(request, container, workflow_id, needed, cls="workflow")


def _names(stages):
    ids = {stage["executable"] for stage in stages}
    return dict(Placement.objects.filter(obj_id__in=ids).values_list("obj_id", "name"))


@login_required
def workflows(request, project_id):
    container = project_for(request, project_id, Level.UPLOAD if request.method == "POST" else Level.VIEW)
    form = NewWorkflowForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                placement = editing.new_workflow(principal(request), container, form.body(container.pk))
        except DXError as err:
            form.add_error(None, err.message)
        else:
            messages.success(request, f"Created {placement.name}: add its stages")
            return redirect("workflow", container.pk, placement.obj_id)
    rows = Placement.objects.filter(container=container, obj__cls="workflow", hidden=False).select_related("obj")
    return render(
        request,
        "jobs/workflows.html",
        {
            "section": "projects",
            "tab": "workflows",
            "project": container,
            "level": container.level,
            "workflows": rows.order_by("name", "-obj__created"),
            "can_create": permissions.reaches(container.level, Level.UPLOAD),
            "form": form,
        },
        status=422 if form.errors else 200,
    )


def _builder_forms(container, placement, specs, data=None, failed=None):
    """The builder's forms, bound to what was posted for the one that was (`failed`: its name)."""
    spec = placement.obj.spec
    version = {"edit_version": spec["editVersion"]}
    applets = Placement.objects.filter(container=container, obj__cls="applet", hidden=False).order_by("name")
    input_specs = {
        stage["id"]: {f["name"]: f for f in (specs.get(stage["executable"]) or {}).get("inputSpec") or []}
        for stage in spec["stages"]
    }

    def make(name, cls, *args):
        return cls(*args, data) if failed == name else cls(*args, initial=version)

    return {
        "add": make("add", AddStageForm, applets),
        "bind": make("bind", BindForm, input_specs),
        "rename": make("rename", RenameStageForm),
        "move": make("move", MoveStageForm),
        "remove": make("remove", RemoveStageForm),
        "input_specs": input_specs,
    }


def _stage_rows(spec, specs, names):
    """Each stage with its inputs (bound or not) and outputs, for the builder's stage cards."""
    rows = []
    for index, stage in enumerate(spec["stages"]):
        exe = specs.get(stage["executable"]) or {}
        earlier = [
            (f"{s['id']}.{f['name']}", f"{s.get('name') or names.get(s['executable'], s['id'])}: {f['name']}")
            for s in spec["stages"][:index]
            for f in (specs.get(s["executable"]) or {}).get("outputSpec") or []
        ]
        inputs = []
        for field in exe.get("inputSpec") or []:
            bound = stage["input"].get(field["name"])
            link = st.stage_link(bound) if bound is not None else None
            inputs.append({"spec": field, "bound": bound, "link": link, "has": field["name"] in stage["input"]})
        rows.append(
            {
                "stage": stage,
                "index": index,
                "executable": names.get(stage["executable"], stage["executable"]),
                "inputs": inputs,
                "outputs": exe.get("outputSpec") or [],
                "earlier_outputs": earlier,
            }
        )
    return rows


def _errors(forms):
    """{stage ID (or "" for the add form): the messages of the builder form that failed}."""
    found = {}
    for form in forms.values():
        if isinstance(form, EditForm) and form.is_bound and form.errors:
            key = form.data.get("stage", "")
            found.setdefault(key, []).extend(e for errors in form.errors.values() for e in errors)
    return found


def render_workflow(request, container, placement, forms=None, status=200):
    spec = placement.obj.spec
    specs = st.executables(spec["stages"])
    names = _names(spec["stages"])
    can_edit = permissions.reaches(container.level, Level.CONTRIBUTE) and placement.obj.state == DataObject.OPEN
    return render(
        request,
        "jobs/workflow.html",
        {
            "section": "projects",
            "tab": "workflows",
            "project": container,
            "level": container.level,
            "workflow": placement,
            "spec": spec,
            "graph": graph.layout(spec["stages"], names),
            "stages": _stage_rows(spec, specs, names),
            "can_edit": can_edit,
            "can_run": placement.obj.state == DataObject.CLOSED,
            "forms": forms or _builder_forms(container, placement, specs),
            "edit_errors": _errors(forms or {}),
            "analyses": Analysis.objects.filter(project=container, executable=placement.obj_id)
            .select_related("launched_by")
            .order_by("-created")[:10],
        },
        status=status,
    )


@login_required
def workflow(request, project_id, workflow_id):
    container = project_for(request, project_id)
    return render_workflow(request, container, workflow_in(request, container, workflow_id))


# What each builder form does: (its form class's key in _builder_forms, the edit, the message).
EDITS = {
    "add": (editing.add_stage, "Added the stage"),
    "bind": (editing.update, "Saved the binding"),
    "rename": (editing.update, "Saved the stage"),
    "move": (editing.move_stage, "Moved the stage"),
    "remove": (editing.remove_stage, "Removed the stage"),
}


@login_required
@require_POST
def workflow_edit(request, project_id, workflow_id, action):
    """One builder form posted: the edit through jobs.workflows.editing, or the page again with the
    form's errors (and nothing changed)."""
    container = project_for(request, project_id, Level.CONTRIBUTE)
    placement = workflow_in(request, container, workflow_id, Level.CONTRIBUTE)
    if action == "close":
        editing.close(placement)
        messages.success(request, f"Closed {placement.name}: it can be run now, and no longer edited")
        return redirect("workflow", container.pk, placement.obj_id)
    if action not in EDITS:
        raise ResourceNotFound(f"No such change: {action}")
    specs = st.executables(placement.obj.spec["stages"])
    forms = _builder_forms(container, placement, specs, request.POST, failed=action)
    form = forms[action]
    edit, done = EDITS[action]
    if form.is_valid():
        try:
            with transaction.atomic():
                edit(principal(request), placement, form.body())
        except DXError as err:
            form.add_error(None, err.message)
        else:
            messages.success(request, done)
            return redirect("workflow", container.pk, placement.obj_id)
    placement.obj.refresh_from_db()
    return render_workflow(request, container, placement, forms, status=422)


def _unbound_inputs(placement):
    """The workflow's inputSpec minus the inputs a stage links to another stage (the run cannot set them)."""
    spec = placement.obj.spec
    input_spec, _ = st.io_specs(spec, st.executables(spec["stages"]))
    return [entry for entry in input_spec if not st.links_of(entry.get("default"))]


@login_required
def workflow_launch(request, project_id, workflow_id):
    container = project_for(request, project_id, Level.CONTRIBUTE if request.method == "POST" else Level.VIEW)
    placement = workflow_in(request, container, workflow_id)
    client_ip = request.META.get("REMOTE_ADDR", "")
    form = WorkflowLaunchForm(
        _unbound_inputs(placement),
        request.POST or None,
        client_ip=client_ip,
        principal=principal(request),
        project=container.pk,
    )
    form.fields["folder"].initial = placement.obj.spec.get("outputFolder") or "/"
    done = launched(
        request,
        form,
        lambda form: analyses.run_workflow(principal(request), placement, form.body(container.pk, placement.obj_id)),
        page="analysis",
    )
    if done is not None:
        return done
    stages = placement.obj.spec["stages"]
    return render(
        request,
        "jobs/workflow_launch.html",
        {
            "section": "projects",
            "tab": "workflows",
            "project": container,
            "level": container.level,
            "workflow": placement,
            "form": form,
            "groups": form.groups(stages),
            "stage_names": {s["id"]: s.get("name") or s["id"] for s in stages},
            "is_open": placement.obj.state != DataObject.CLOSED,
            "can_run": permissions.reaches(container.level, Level.CONTRIBUTE)
            and placement.obj.state == DataObject.CLOSED,
            "client_ip": client_ip,
        },
        status=422 if form.errors else 200,
    )


@login_required
def analysis(request, analysis_id):
    found = access_analysis(principal(request), analysis_id)
    jobs = {job.stage: job for job in found.stage_jobs.filter(origin_id=F("pk"))}
    layout = graph.layout(found.stages, _names(found.stages))
    for node in layout.nodes:
        job = jobs.get(node.id)
        if job is not None:
            node.state, node.execution, node.url = job.state, job.pk, reverse("job", args=[job.pk])
    outputs = [
        {"stage": node, "rows": io_rows(request, jobs[node.id], jobs[node.id].output, None)}
        for node in layout.nodes
        if node.id in jobs and jobs[node.id].output
    ]
    workflow_url = None
    if Placement.objects.filter(container=found.project_id, obj_id=found.executable).exists():
        workflow_url = reverse("workflow", args=[found.project_id, found.executable])
    return render(
        request,
        "jobs/analysis.html",
        {
            "section": "jobs",
            "analysis": found,
            "project": found.project,
            "level": found.level,
            "graph": layout,
            "outputs": outputs,
            "workflow_url": workflow_url,
            "can_terminate": permissions.reaches(found.level, Level.CONTRIBUTE) and not found.is_final,
            "watch": [found.pk, *[job.pk for job in jobs.values()]],
            "ws_path": f"/ws/projects/{found.project_id}/jobs/",
        },
    )


@login_required
@require_POST
def analysis_terminate(request, analysis_id):
    found = access_analysis(principal(request), analysis_id, Level.CONTRIBUTE)
    try:
        with transaction.atomic():
            analyses.terminate(principal(request), found)
    except DXError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, f"Terminating {found.name} and its stage jobs")
    return redirect("analysis", found.pk)
