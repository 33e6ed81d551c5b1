"""Pages: each view checks access through permissions.py, calls an action and renders or redirects."""

import logging
import time
from contextlib import nullcontext
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery, Sum
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dxweb.api import parse_body
from dxweb.errors import DXError, InvalidInput, InvalidState, ResourceNotFound
from dxweb.middleware import answers_json
from dxweb.validation import get

from . import accounts, actions, permissions, transfer
from .api import find_data_objects
from .forms import (
    LEVEL_CHOICES,
    CopyForm,
    EmailForm,
    InviteForm,
    NameForm,
    NotifyForm,
    OrgForm,
    OrgMemberForm,
    ProjectForm,
    PropertiesForm,
    SearchForm,
    SshKeyForm,
    TagsForm,
    TokenForm,
    properties_text,
)
from .models import Container, DataObject, FilePart, Folder, Level, OrgMember, Placement, upload_parameters
from .permissions import Principal

PAGE_SIZE = 100
# The browser sends 16 MiB parts (larger when a file would need more parts than allowed).
UPLOAD_PART_SIZE = 16 * 1024 * 1024
# Session keys for secrets shown once, on the next render of the page that asked for them.
NEW_TOKEN = "dxweb.new_token"
CLI_TOKEN = "dxweb.cli_token"
# The address a user asked for, until they follow the link mailed to it (shown as pending).
PENDING_EMAIL = "dxweb.pending_email"

log = logging.getLogger(__name__)


# Reaching objects ----------------------------------------------------------------
# A refusal raised here (ResourceNotFound, PermissionDenied) becomes the 404 or 403 page (dxweb/middleware.py).


def principal(request):
    return Principal(user=request.user, request=request)


def project_for(request, project_id, needed=Level.VIEW):
    return permissions.access_container(principal(request), project_id, needed, kinds=(Container.PROJECT,))


def placement_in(request, container, object_id, needed=Level.VIEW):
    """Return the object as placed in `container`, or raise ResourceNotFound."""
    placement = permissions.access_object(principal(request), object_id, needed, project=container.pk)
    if placement.container_id != container.pk:
        raise ResourceNotFound(f"The entity {object_id} could not be found in {container.name}")
    return placement


def folder_url(container_id, folder="/"):
    url = reverse("project", args=[container_id])
    return f"{url}?{urlencode({'folder': folder})}" if folder != "/" else url


def posted_folder(request):
    """Return the folder a form was posted from, to go back there (the root if it is not a valid path)."""
    try:
        return actions.clean_folder(request.POST.get("folder") or "/")
    except DXError:
        return "/"


def form_data(form):
    """Return the form's cleaned data, or raise its errors as one InvalidInput for a flash message."""
    if not form.is_valid():
        raise InvalidInput(" ".join(str(error) for errors in form.errors.values() for error in errors))
    return form.cleaned_data


def project_action(needed, back="folder", after=None, atomic=True):
    """Wrap a form POST on a project: access check, the action in a transaction, a flash, a redirect.

    The redirect goes back to the posting folder (or the Members tab), or to `after` on success.
    `atomic=False` leaves transactions to the action.
    """

    def decorate(fn):
        @wraps(fn)
        @login_required
        @require_POST
        def view(request, project_id):
            container = project_for(request, project_id, needed)
            folder = posted_folder(request)
            try:
                with transaction.atomic() if atomic else nullcontext():
                    messages.success(request, fn(request, container, folder))
            except DXError as err:
                messages.error(request, err.message)
            else:
                if after:
                    return redirect(after)
            if back == "members":
                return redirect("members", container.pk)
            return redirect(folder_url(container.pk, folder))

        return view

    return decorate


def json_action(needed):
    """Wrap a JSON POST from a page script: session and CSRF, access check, DXErrors as JSON."""

    def decorate(fn):
        @answers_json
        @wraps(fn)
        @login_required
        @require_POST
        def view(request, project_id, **kwargs):
            container = project_for(request, project_id, needed)
            body = parse_body(request)
            with transaction.atomic():
                return JsonResponse(fn(request, container, body, **kwargs))

        return view

    return decorate


# Dashboard -------------------------------------------------------------------------


@login_required
def dashboard(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                container = actions.create_container(
                    request.user, form.cleaned_data["name"], summary=form.cleaned_data["summary"]
                )
        except DXError as err:
            form.add_error(None, err.message)
        else:
            messages.success(request, f"Created the project {container.name}")
            return redirect("project", container.pk)
    usage = (
        Placement.objects.filter(container=OuterRef("pk"), obj__cls="file")
        .values("container")
        .annotate(total=Sum("obj__size"))
        .values("total")
    )
    projects = permissions.visible_projects(principal(request)).annotate(data_bytes=Subquery(usage))
    page = Paginator(projects.order_by("-modified", "pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "projects/dashboard.html", {"section": "projects", "page": page, "form": form})


# Project: files and folders --------------------------------------------------------------


def folder_tree(container, current):
    """Return (tree rows, subfolders of `current`, whether it exists): each ancestor open, its children listed."""
    names = [part for part in current.split("/") if part]
    ancestors = ["/"] + ["/" + "/".join(names[: i + 1]) for i in range(len(names))]
    children = {}
    for path, parent in (
        Folder.objects.filter(container=container, parent__in=ancestors).order_by("path").values_list("path", "parent")
    ):
        children.setdefault(parent, []).append(path)
    rows = [{"path": "/", "name": "/", "depth": 0, "open": True, "current": current == "/"}]

    def walk(parent, depth):
        for path in children.get(parent, []):
            is_open = path in ancestors
            rows.append(
                {
                    "path": path,
                    "name": path.rsplit("/", 1)[1],
                    "depth": depth,
                    "open": is_open,
                    "current": path == current,
                }
            )
            if is_open:
                walk(path, depth + 1)

    walk("/", 1)
    exists = current == "/" or current in children.get(actions.parent_of(current), [])
    return rows, children.get(current, []), exists


def breadcrumbs(folder):
    names = [part for part in folder.split("/") if part]
    return [{"name": name, "path": "/" + "/".join(names[: i + 1])} for i, name in enumerate(names)]


@login_required
def project(request, project_id):
    container = project_for(request, project_id)
    try:
        folder = actions.clean_folder(request.GET.get("folder") or "/")
        tree, subfolders, exists = folder_tree(container, folder)
        if not exists:
            raise ResourceNotFound(f'The folder "{folder}" could not be found in {container.name}')
    except DXError as err:
        messages.error(request, err.message)
        return redirect("project", container.pk)
    # The (container, folder, name) index serves both the count and the page.
    listing = (
        Placement.objects.filter(container=container, folder=folder, hidden=False)
        .select_related("obj")
        .order_by("name", "pk")
    )
    page = Paginator(listing, PAGE_SIZE).get_page(request.GET.get("page"))
    limits = upload_parameters()
    return render(
        request,
        "projects/project.html",
        {
            "section": "projects",
            "tab": "files",
            "project": container,
            "level": container.level,
            "can_upload": permissions.reaches(container.level, Level.UPLOAD),
            "can_change": permissions.reaches(container.level, Level.CONTRIBUTE),
            "folder": folder,
            "breadcrumbs": breadcrumbs(folder),
            "tree": tree,
            "subfolders": [{"path": p, "name": p.rsplit("/", 1)[1]} for p in subfolders] if page.number == 1 else [],
            "page": page,
            "all_folders": container.folders.order_by("path").values_list("path", flat=True)[:1000]
            if permissions.reaches(container.level, Level.CONTRIBUTE)
            else [],
            "copy_targets": copy_targets(request, container)
            if permissions.reaches(container.level, Level.CONTRIBUTE)
            else [],
            "upload": {
                "part_size": max(UPLOAD_PART_SIZE, settings.DXWEB_MIN_PART_SIZE),
                "max_parts": limits["maximumNumParts"],
                "max_part_size": limits["maximumPartSize"],
            },
        },
    )


@project_action(Level.UPLOAD)
def new_folder(request, container, folder):
    name = form_data(NameForm(request.POST))["name"]
    path = actions.new_folder(container, folder.rstrip("/") + "/" + name)
    return f"Created the folder {path}"


@project_action(Level.CONTRIBUTE)
def rename_object(request, container, folder):
    placement = placement_in(request, container, request.POST.get("object", ""), Level.CONTRIBUTE)
    old = placement.name
    actions.rename(placement, form_data(NameForm(request.POST))["name"])
    return f"Renamed {old} to {placement.name}"


@project_action(Level.CONTRIBUTE)
def rename_folder(request, container, folder):
    name = form_data(NameForm(request.POST))["name"]
    target = actions.rename_folder(container, request.POST.get("path", ""), name)
    return f"Renamed the folder to {target}"


def selection(request):
    objects, folders = request.POST.getlist("objects"), request.POST.getlist("folders")
    if not objects and not folders:
        raise InvalidInput("Select at least one file or folder first")
    return objects, folders


def counted(objects, folders):
    total = len(objects) + len(folders)
    return f"{total} item{'s' if total != 1 else ''}"


@project_action(Level.CONTRIBUTE)
def move(request, container, folder):
    objects, folders = selection(request)
    destination = request.POST.get("destination", "").strip()
    actions.move(container, objects, folders, destination)
    return f"Moved {counted(objects, folders)} to {actions.clean_folder(destination)}"


@project_action(Level.CONTRIBUTE)
def remove(request, container, folder):
    objects, folders = selection(request)
    if objects:
        actions.remove_objects(container, objects)
    for path in folders:
        actions.remove_folder(container, path, recurse=True)
    return f"Deleted {counted(objects, folders)}"


@login_required
def download(request, project_id, file_id):
    container = project_for(request, project_id)
    placement = placement_in(request, container, file_id)
    if placement.obj.cls != "file" or placement.obj.state != DataObject.CLOSED:
        messages.error(request, f"{placement.name} is {placement.obj.state}; only closed files can be downloaded")
        return redirect(folder_url(container.pk, placement.folder))
    url, _ = transfer.download_url(request, placement.obj_id, placement.name)
    return redirect(url)


# Data pages: an object, its tags and properties, using it as an input, search, copy -----------------

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


def copy_targets(request, container):
    """Other projects the user may upload to, for "Copy to project…"."""
    projects = permissions.visible_projects(principal(request), Level.UPLOAD).exclude(pk=container.pk)
    return list(projects.order_by("name", "pk")[:500])


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


# Project settings ------------------------------------------------------------------------


@login_required
def project_settings(request, project_id):
    """Rename the project and change its summary (CONTRIBUTE, as /project-x/update)."""
    container = project_for(request, project_id, Level.CONTRIBUTE)
    form = ProjectForm(request.POST or None, initial={"name": container.name, "summary": container.summary})
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                data = form.cleaned_data
                actions.update_container(container, name=data["name"], summary=data["summary"])
        except DXError as err:
            form.add_error(err.field if err.field in form.fields else None, err.message)
        else:
            messages.success(request, f"Saved the project {container.name}")
            return redirect("project", container.pk)
    return render(
        request,
        "projects/settings.html",
        {"section": "projects", "tab": "settings", "project": container, "level": container.level, "form": form},
        status=422 if form.errors else 200,
    )


# Uploads from the project page's script ---------------------------------------------


@json_action(Level.UPLOAD)
def upload_new(request, container, body):
    placement = actions.new_object(
        request.user,
        container,
        "file",
        name=get(body, "name", str),
        folder=get(body, "folder", str, "/"),
        media=actions._check_text(get(body, "media", str, ""), '"media"', 255),
    )
    return {"id": placement.obj_id}


@json_action(Level.UPLOAD)
def upload_part(request, container, body, file_id):
    placement = placement_in(request, container, file_id, Level.UPLOAD)
    index, size, md5 = get(body, "index", int), get(body, "size", int), get(body, "md5", str)
    actions.request_upload(placement.obj, index, size, md5)
    url, expires = transfer.upload_url(request, placement.obj_id, index, size, md5.lower())
    return {"url": url, "expires": expires}


@json_action(Level.UPLOAD)
def upload_close(request, container, body, file_id):
    placement = placement_in(request, container, file_id, Level.UPLOAD)
    obj = actions.close_file(placement.obj)
    return {"id": obj.pk, "state": obj.state, "size": obj.size}


# Members -------------------------------------------------------------------------------


@login_required
def members(request, project_id):
    container = project_for(request, project_id, Level.ADMINISTER if request.method == "POST" else Level.VIEW)
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                grantee = actions.invite(container, form.cleaned_data["invitee"], form.cleaned_data["level"])
        except DXError as err:
            form.add_error("invitee", err.message)
        else:
            messages.success(request, f"{grantee} now has {form.cleaned_data['level']} access")
            return redirect("members", container.pk)
    grants = container.grants.select_related("user", "org").order_by("-level", "user__username", "org__handle")
    return render(
        request,
        "projects/members.html",
        {
            "section": "projects",
            "tab": "members",
            "project": container,
            "level": container.level,
            "can_admin": permissions.reaches(container.level, Level.ADMINISTER),
            "grants": grants,
            "access": permissions.effective_access(container),
            "form": form,
            "levels": [label for label, _ in LEVEL_CHOICES],
            "is_direct_member": any(g.user_id == request.user.pk for g in grants),
        },
    )


@project_action(Level.ADMINISTER, back="members")
def member_change(request, container, folder):
    grantee, level = request.POST.get("grantee", ""), request.POST.get("level", "")
    actions.change_member_level(container, grantee, level)
    return f"{grantee} now has {level} access"


@project_action(Level.ADMINISTER, back="members")
def member_revoke(request, container, folder):
    grantee = request.POST.get("grantee", "")
    actions.decrease_permissions(container, {grantee: None})
    return f"Revoked the access of {grantee}"


@project_action(Level.VIEW, back="members", after="dashboard")
def leave(request, container, folder):
    actions.leave(container, request.user)
    return f"You left {container.name}"


@project_action(Level.ADMINISTER, back="members", after="dashboard", atomic=False)
def destroy(request, container, folder):
    if request.POST.get("confirm") != container.name:
        raise InvalidInput("Type the project's name exactly to delete it")
    actions.destroy_project(principal(request), container, terminate_jobs=True)
    return f"Deleted the project {container.name}"


# Orgs ------------------------------------------------------------------------------------


def org_for(request, org_id, admin=False):
    return permissions.access_org(principal(request), org_id, admin=admin)


@login_required
def orgs(request):
    form = OrgForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                org = actions.create_org(request.user, form.cleaned_data["handle"], form.cleaned_data["name"] or None)
        except DXError as err:
            form.add_error("handle", err.message)
        else:
            messages.success(request, f"Created the org {org.pk}")
            return redirect("org", org.pk)
    memberships = (
        OrgMember.objects.filter(user=request.user)
        .select_related("org")
        .annotate(member_count=Count("org__members"))
        .order_by("org__handle")
    )
    return render(request, "projects/orgs.html", {"section": "orgs", "memberships": memberships, "form": form})


@login_required
def org(request, org_id):
    org = org_for(request, org_id, admin=request.method == "POST")
    form = OrgMemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                user, _ = actions.resolve_grantee(form.cleaned_data["user"])
                actions.set_org_member(org, user, form.cleaned_data["role"])
        except DXError as err:
            form.add_error("user", err.message)
        else:
            messages.success(request, f"{form.cleaned_data['user']} is now {form.cleaned_data['role']} of {org.pk}")
            return redirect("org", org.pk)
    return render(
        request,
        "projects/org.html",
        {
            "section": "orgs",
            "org": org,
            "is_admin": org.role == OrgMember.ADMIN,
            "members": org.members.select_related("user").order_by("user__username"),
            "grants": org.grants.filter(container__kind=Container.PROJECT)
            .select_related("container")
            .order_by("container__name"),
            "form": form,
            "roles": [role for role, _ in OrgMember.LEVELS],
        },
    )


def org_action(fn):
    """Wrap an ADMIN's form POST on an org member: the action in a transaction, a flash, back to the org."""

    @wraps(fn)
    @login_required
    @require_POST
    def view(request, org_id):
        org = org_for(request, org_id, admin=True)
        try:
            with transaction.atomic():
                user = permissions.access_user(principal(request), request.POST.get("user", ""))
                messages.success(request, fn(request, org, user))
        except DXError as err:
            messages.error(request, err.message)
        if permissions.org_role(request.user, org) is None:
            return redirect("orgs")
        return redirect("org", org.pk)

    return view


@org_action
def org_role(request, org, user):
    role = request.POST.get("role", "")
    if permissions.org_role(user, org) is None:
        raise InvalidState(f"{user.dx_id} is not a member of {org.pk}")
    actions.set_org_member(org, user, role)
    return f"{user.dx_id} is now {role} of {org.pk}"


@org_action
def org_remove(request, org, user):
    actions.remove_org_member(org, user)
    return f"Removed {user.dx_id} from {org.pk}"


# Profile and CLI access ------------------------------------------------------------------


def render_profile(request, token_form=None, key_form=None, email_form=None, status=200):
    user = request.user
    pending = request.session.get(PENDING_EMAIL)
    if pending and pending == user.email:
        del request.session[PENDING_EMAIL]
        pending = None
    return render(
        request,
        "projects/profile.html",
        {
            "section": "profile",
            "tokens": user.tokens.filter(job_id=""),
            "new_token": request.session.pop(NEW_TOKEN, None),
            "token_form": token_form or TokenForm(),
            "key_form": key_form or SshKeyForm(initial={"key": user.ssh_public_key}),
            "email_form": email_form or EmailForm(user=user, initial={"email": pending or user.email}),
            "pending_email": pending,
            "sends_mail": accounts.sends_mail(),
            "email_link_days": accounts.EMAIL_LINK_SECONDS // 86400,
            "can_email": can_email(user),
            "notify_form": NotifyForm(
                initial={"notify_in_app": user.notify_in_app, "notify_by_email": user.notify_by_email}
            ),
        },
        status=status,
    )


def can_email(user):
    """Whether job notices can be emailed to the user: this site sends mail and they have an address."""
    return accounts.sends_mail() and bool(user.email)


@login_required
@require_POST
def notify_settings(request):
    form = NotifyForm(request.POST)
    form.is_valid()  # two checkboxes: always valid
    # Without a confirmed address (or mail) the box is disabled, and so off, as the page shows it.
    by_email = form.cleaned_data["notify_by_email"] and can_email(request.user)
    actions.set_notifications(request.user, form.cleaned_data["notify_in_app"], by_email)
    messages.success(request, "Saved your notification settings")
    return redirect("profile")


@login_required
def profile(request):
    return render_profile(request)


@login_required
@require_POST
def email_address(request):
    """Set the user's email address: at once without mail, else once they follow the link mailed to it."""
    user = request.user
    form = EmailForm(request.POST, user=user)
    if not form.is_valid():
        return render_profile(request, email_form=form, status=422)
    email = form.cleaned_data["email"]
    if email == user.email:
        request.session.pop(PENDING_EMAIL, None)
        messages.info(request, "Your email address is unchanged")
    elif not email or not accounts.sends_mail():
        actions.set_email(user, email)
        request.session.pop(PENDING_EMAIL, None)
        if not email:
            messages.success(request, "Removed your email address")
        else:
            messages.success(
                request, "Saved your email address. This site sends no mail, so notices will not be emailed."
            )
    else:
        try:
            accounts.send_email_link(user, email)
        except Exception:  # noqa: BLE001 - SMTP refused or unreachable: say so, change nothing
            log.warning("could not send the confirmation link to %s", email, exc_info=True)
            form.add_error("email", "The confirmation email could not be sent; try again later.")
            return render_profile(request, email_form=form, status=503)
        request.session[PENDING_EMAIL] = email
        messages.success(request, f"We sent a link to {email}: open it to confirm the address.")
    return redirect("profile")


@login_required
def email_confirm(request, token):
    """The page of a link mailed to a new address: GET asks (mail scanners open links), POST sets it."""
    try:
        email = accounts.email_link_address(request.user, token)
        if request.method == "POST":
            actions.set_email(request.user, email)
    except DXError as err:
        return render(
            request, "projects/profile_email.html", {"section": "profile", "error": err.message}, status=err.status
        )
    if request.method == "POST":
        request.session.pop(PENDING_EMAIL, None)
        messages.success(request, f"Your email address is now {email}")
        return redirect("profile")
    return render(request, "projects/profile_email.html", {"section": "profile", "email": email})


@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, raw = actions.issue_token(request.user, form.cleaned_data["name"])
        except DXError as err:
            form.add_error("name", err.message)
        else:
            request.session[NEW_TOKEN] = {"id": token.pk, "name": token.name, "raw": raw}
            return redirect("profile")
    return render_profile(request, token_form=form)


@login_required
@require_POST
def token_revoke(request, token_id):
    actions.revoke_token(request.user, token_id)
    messages.success(request, "The token was revoked; clients using it can no longer sign in")
    return redirect("profile")


@login_required
@require_POST
def ssh_key(request):
    form = SshKeyForm(request.POST)
    if form.is_valid():
        try:
            actions.set_ssh_public_key(request.user, form.cleaned_data["key"])
        except DXError as err:
            form.add_error("key", err.message)
        else:
            saved = "Saved your SSH public key" if form.cleaned_data["key"] else "Removed your SSH public key"
            messages.success(request, saved)
            return redirect("profile")
    return render_profile(request, key_form=form)


def server_address(request):
    """Return (protocol, host, port) as the dx client should reach this server."""
    secure = request.is_secure()
    host = request.get_host()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    return ("https" if secure else "http"), name, port or ("443" if secure else "80")


# "Create a token for the CLI" must not make a token per click. The page lists the user's CLI
# tokens by hint and date, and its form says which was the newest it showed ("after");
# actions.issue_token_once makes a token only while that is still the newest, under a lock. So a
# double click, a reload of the POST or Back-and-send-again make one token: the repeats find it made
# and redirect (POST-redirect-GET) to the page as the first sending left it. Its secret is kept in
# the session for CLI_TOKEN_REPEAT_SECONDS so that a repeat within that time shows the same token
# again; after that, or once shown, the page lists it by its hint only. "Use a new token" (after a
# confirmation) sends the form with the newest token's id, which makes one more.
CLI_TOKEN_NAME = "CLI access"
CLI_TOKEN_REPEAT_SECONDS = 120


def cli_token_record(request):
    """The session's record of the CLI token made last ({"id", "raw", "at", "shown"}), while it is fresh."""
    record = request.session.get(CLI_TOKEN)
    if not isinstance(record, dict) or time.time() - record.get("at", 0) > CLI_TOKEN_REPEAT_SECONDS:
        request.session.pop(CLI_TOKEN, None)
        return None
    return record


@login_required
def cli(request):
    protocol, host, port = server_address(request)
    token = None
    record = cli_token_record(request)
    if record and not record["shown"]:
        token = record["raw"]
        request.session[CLI_TOKEN] = {**record, "shown": True}
    cli_tokens = list(request.user.tokens.filter(job_id="", name=CLI_TOKEN_NAME).order_by("-pk"))
    return render(
        request,
        "projects/cli.html",
        {
            "section": "cli",
            "protocol": protocol,
            "host": host,
            "port": port,
            "token": token,
            "cli_tokens": cli_tokens,
            "newest_cli_token": cli_tokens[0].pk if cli_tokens else 0,
            "projects": permissions.visible_projects(principal(request)).order_by("-modified")[:50],
        },
    )


@login_required
@require_POST
def cli_token(request):
    after = request.POST.get("after", "")
    token, raw = actions.issue_token_once(request.user, CLI_TOKEN_NAME, int(after) if after.isdigit() else 0)
    if raw is not None:
        request.session[CLI_TOKEN] = {"id": token.pk, "raw": raw, "at": time.time(), "shown": False}
    else:
        record = cli_token_record(request)
        if record and record["id"] == token.pk:
            request.session[CLI_TOKEN] = {**record, "shown": False}
        messages.info(request, "This form was sent more than once: only one token was made.")
    return redirect("cli")
