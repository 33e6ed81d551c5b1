"""Data pages: an object's page (facts, preview, tags and properties, use as input, copy), data search, copy."""

import logging
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dxweb.errors import DXError, InvalidInput

from . import actions, permissions
from .api import find_data_objects
from .forms import (
    CopyForm,
    PropertiesForm,
    SearchForm,
    TagsForm,
    properties_text,
)
from .models import Container, DataObject, FilePart, Level, Placement
from .views import (
    breadcrumbs,
    copy_targets,
    counted,
    folder_url,
    form_data,
    placement_in,
    principal,
    project_action,
    project_for,
    selection,
)

log = logging.getLogger(__name__)


PREVIEW_BYTES = 64 * 1024
TEXT_MEDIA = ("text/", "application/json", "application/xml", "application/x-yaml", "application/x-sh")
TEXT_SUFFIXES = {
    *(".txt", ".text", ".csv", ".tsv", ".json", ".jsonl", ".md", ".rst", ".log", ".out", ".err", ".xml", ".html"),
    *(".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".py", ".sh", ".r", ".pl", ".wdl", ".cwl", ".nf"),
    *(".fa", ".fasta", ".fna", ".faa", ".fq", ".fastq", ".sam", ".vcf", ".bed", ".gff", ".gff3", ".gtf"),
}
# Where an applet's file inputs come from: classes a file can be given to.
FILE_INPUTS = ("file", "array:file")
USE_AS_INPUT_APPLETS = 200


def is_text_like(media, name):
    media = (media or "").split(";")[0].strip().lower()
    if media.startswith(TEXT_MEDIA):
        return True
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return suffix in TEXT_SUFFIXES


def preview(obj, name):
    """{"text", "truncated"} for the first PREVIEW_BYTES of a closed text file, or {"reason"} why not."""
    if obj.cls != "file":
        return None
    if obj.state != DataObject.CLOSED:
        return {"reason": f"No preview: the file is {obj.state}"}
    if not is_text_like(obj.media, name):
        return {"reason": "No preview for this kind of file; download it to look inside"}
    chunks, wanted = [], PREVIEW_BYTES
    try:
        for blob in FilePart.objects.filter(file=obj).order_by("index").values_list("blob", flat=True):
            if wanted <= 0:
                break
            with default_storage.open(blob, "rb") as handle:
                chunk = handle.read(wanted)
            chunks.append(chunk)
            wanted -= len(chunk)
    except (OSError, ValueError):
        return {"reason": "The preview could not be read; the download may still work"}
    data = b"".join(chunks)
    if b"\x00" in data:
        return {"reason": "No preview: the file holds binary data"}
    truncated = obj.size > len(data)
    if truncated and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]  # whole lines only
    return {"text": data.decode("utf-8", errors="replace"), "truncated": truncated, "size": len(data)}


def file_inputs(container):
    """[(value "applet:field", label)]: each file input of the project's applets (newest version of each name)."""
    placements = (
        Placement.objects.filter(container=container, obj__cls="applet", hidden=False)
        .select_related("obj")
        .order_by("name", "-obj__created", "-pk")
    )
    newest = {}
    for p in placements[:USE_AS_INPUT_APPLETS]:
        newest.setdefault(p.name, p)
    choices = []
    for p in newest.values():
        for spec in p.obj.spec.get("inputSpec") or []:
            if isinstance(spec, dict) and spec.get("class") in FILE_INPUTS and isinstance(spec.get("name"), str):
                label = spec.get("label") or spec["name"]
                many = " (one of many)" if spec["class"].startswith("array:") else ""
                choices.append((f"{p.obj_id}:{spec['name']}", f"{p.name} → {label}{many}"))
    return choices


def object_page(request, container, placement, tags_form=None, properties_form=None, copy_form=None, status=200):
    obj = placement.obj
    can_change = permissions.reaches(container.level, Level.CONTRIBUTE)
    parts = list(obj.parts.order_by("index")) if obj.cls == "file" else []
    complete = [p for p in parts if p.state == FilePart.COMPLETE]
    targets = copy_targets(request, container)
    return render(
        request,
        "projects/object.html",
        {
            "section": "projects",
            "tab": "files",
            "project": container,
            "level": container.level,
            "can_change": can_change,
            "placement": placement,
            "obj": obj,
            "creator": obj.created_by,
            "parts": parts,
            # One part's md5 is the whole file's; a file sent in parts has each part's only.
            "md5": complete[0].md5 if len(parts) == 1 and complete else "",
            "preview": preview(obj, placement.name),
            "breadcrumbs": breadcrumbs(placement.folder),
            "folder_link": folder_url(container.pk, placement.folder),
            "inputs": file_inputs(container) if obj.cls == "file" and obj.state == DataObject.CLOSED else [],
            "can_run": can_change,
            "tags_form": tags_form or TagsForm(initial={"tags": ", ".join(placement.tags)}),
            "properties_form": properties_form
            or PropertiesForm(initial={"properties": properties_text(placement.properties)}),
            "copy_form": copy_form or CopyForm(projects=targets, initial={"destination": "/", "parents": True}),
            "copy_targets": targets,
        },
        status=status,
    )


def object_for(request, project_id, object_id, needed=Level.VIEW):
    container = project_for(request, project_id, needed)
    return container, placement_in(request, container, object_id, needed)


@login_required
def data_object(request, project_id, file_id):
    """A file (or record) as placed in the project; applets and workflows have pages of their own."""
    container, placement = object_for(request, project_id, file_id)
    if placement.obj.cls == "applet":
        return redirect("applet", container.pk, placement.obj_id)
    if placement.obj.cls == "workflow":
        return redirect("workflow", container.pk, placement.obj_id)
    return object_page(request, container, placement)


def object_form(form_class, apply, done):
    """Wrap a CONTRIBUTE form POST on one object: errors next to the field, else the action and a flash."""

    @login_required
    @require_POST
    def view(request, project_id, file_id):
        container, placement = object_for(request, project_id, file_id, Level.CONTRIBUTE)
        form = form_class(request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    apply(placement, form.cleaned_data)
            except DXError as err:
                form.add_error(None, err.message)
            else:
                messages.success(request, done)
                return redirect("file", container.pk, placement.obj_id)
        key = "tags_form" if form_class is TagsForm else "properties_form"
        return object_page(request, container, placement, status=422, **{key: form})

    return view


def _set_tags(placement, data):
    actions.change_tags(placement, add=data["tags"], remove=[t for t in placement.tags if t not in data["tags"]])


def _set_properties(placement, data):
    gone = {key: None for key in placement.properties if key not in data["properties"]}
    actions.set_properties(placement, {**data["properties"], **gone})


object_tags = object_form(TagsForm, _set_tags, "Saved the tags")
object_properties = object_form(PropertiesForm, _set_properties, "Saved the properties")


@login_required
def use_as_input(request, project_id, file_id):
    """GET ?target=<applet>:<input>: to that applet's launch form with this file as that input."""
    container, placement = object_for(request, project_id, file_id)
    applet_id, _, field = request.GET.get("target", "").partition(":")
    if (applet_id + ":" + field) not in dict(file_inputs(container)):
        messages.error(request, "Choose an applet's file input to use this file for")
        return redirect("file", container.pk, placement.obj_id)
    launch = reverse("launch", args=[container.pk, applet_id])
    return redirect(f"{launch}?{urlencode({f'in_{field}': placement.obj_id})}")


@login_required
@require_POST
def copy_object(request, project_id, file_id):
    """Copy one object to another project (VIEW here, UPLOAD there), from its page."""
    container, placement = object_for(request, project_id, file_id)
    form = CopyForm(request.POST, projects=copy_targets(request, container))
    if form.is_valid():
        try:
            with transaction.atomic():
                message = copy_into(request, container, form.cleaned_data, [placement.obj_id], [])
        except DXError as err:
            form.add_error(err.field if err.field in form.fields else None, err.message)
        else:
            messages.success(request, message)
            return redirect("file", container.pk, placement.obj_id)
    return object_page(request, container, placement, copy_form=form, status=422)


def copy_into(request, container, data, objects, folders):
    """Clone objects and folders of `container` into the chosen project; say what happened."""
    dest = permissions.access_container(principal(request), data["project"], Level.UPLOAD, kinds=(Container.PROJECT,))
    if dest.pk == container.pk:
        raise InvalidInput("Choose another project: Move places items elsewhere in this one", field="project")
    exists = actions.clone(container, dest, objects, folders, data["destination"], parents=data["parents"])
    said = f"Copied {counted(objects, folders)} to {dest.name}:{data['destination']}"
    if exists:
        shown = ", ".join(exists[:5]) + ("…" if len(exists) > 5 else "")
        said += f" ({len(exists)} already there, left as they were: {shown})"
    return said


@project_action(Level.VIEW)
def copy(request, container, folder):
    objects, folders = selection(request)
    return copy_into(request, container, form_data(CopyForm(request.POST)), objects, folders)


SEARCH_PAGE = 50


@login_required
def search(request, project_id):
    """The project's data found by name (wildcards), class, tag and property, as findDataObjects finds it."""
    container = project_for(request, project_id)
    form = SearchForm(request.GET if request.GET else None)
    results, next_key = [], None
    if form.is_bound and form.is_valid():
        body = form.body(container.pk) | {"limit": SEARCH_PAGE}
        starting = request.GET.get("starting", "")
        if starting:  # the `next` of the page before: a placement's key, a number
            body["starting"] = int(starting) if starting.isdigit() and len(starting) < 19 else starting
        try:
            found = find_data_objects(principal(request), body)
        except DXError as err:
            form.add_error(None, err.message)
        else:
            results, next_key = [row["describe"] for row in found["results"]], found["next"]
    params = request.GET.copy()
    params.pop("starting", None)
    return render(
        request,
        "projects/search.html",
        {
            "section": "projects",
            "tab": "files",
            "project": container,
            "level": container.level,
            "form": form,
            "results": results,
            "searched": form.is_bound and not form.errors,
            "query": params.urlencode(),
            "next_key": next_key,
            "paged": bool(request.GET.get("starting")),
        },
        status=422 if form.errors else 200,
    )
