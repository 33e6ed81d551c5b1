"""Pages: each view checks access through permissions.py, calls an action and renders or redirects."""

import logging
from contextlib import nullcontext
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
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

from . import actions, permissions, transfer
from .forms import (
    LEVEL_CHOICES,
    InviteForm,
    NameForm,
    OrgForm,
    OrgMemberForm,
    ProjectForm,
)
from .models import Container, DataObject, Folder, Level, OrgMember, Placement, upload_parameters
from .permissions import Principal

PAGE_SIZE = 100
# The browser sends 16 MiB parts (larger when a file would need more parts than allowed).
UPLOAD_PART_SIZE = 16 * 1024 * 1024

log = logging.getLogger(__name__)


# Reaching objects ----------------------------------------------------------------
# A refusal raised here (ResourceNotFound, PermissionDenied) becomes the 404 or 403 page (dxweb/middleware.py).


def principal(request):
    return Principal(user=request.user, request=request)


def project_for(request, project_id, needed=Level.VIEW):
    return permissions.access_container(principal(request), project_id, needed, kinds=(Container.PROJECT,))


def placement_in(request, container, object_id, needed=Level.VIEW, cls=None):
    """Return the object (of class `cls`, if given) as placed in `container`, or raise ResourceNotFound."""
    placement = permissions.access_object(principal(request), object_id, needed, project=container.pk, cls=cls)
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


def copy_targets(request, container):
    """Other projects the user may upload to, for "Copy to project…"."""
    projects = permissions.visible_projects(principal(request), Level.UPLOAD).exclude(pk=container.pk)
    return list(projects.order_by("name", "pk")[:500])


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
    if any(actions.clean_folder(path) == "/" for path in folders):
        # The API empties a project this way (removeFolder "/"); the page deletes what was selected in it.
        raise InvalidInput("The root folder cannot be deleted: select the files and folders in it")
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
