"""API methods for users, orgs, projects, folders and data objects."""

from django.conf import settings
from django.db import DatabaseError

from dxweb.api import api_method
from dxweb.errors import InvalidInput, PermissionDenied
from dxweb.validation import MAX_INT, get, string_list, string_map

from . import actions, permissions, transfer
from .find import describe_input, name_query, page_limit
from .models import (
    PROJECT_FLAGS,
    DataObject,
    Level,
    OrgMember,
    Placement,
    describe_container,
    describe_placement,
    select_fields,
)
from .permissions import access_container, access_object, access_org, access_self, access_user

CONTAINER_CLASSES = ("project", "container")
OBJECT_CLASSES = ("file", "record", "applet", "workflow", "database")


def _check_tag_query(query):
    """Refuse a malformed find `tags` query before any row is read."""
    if isinstance(query, str):
        return
    if isinstance(query, dict) and len(query) == 1:
        ((op, items),) = query.items()
        if op in ("$and", "$or") and isinstance(items, list):
            query = items
    if not isinstance(query, list):
        raise InvalidInput('"tags" must be a string, an array, or {"$and"|"$or": [...]}')
    for item in query:
        _check_tag_query(item)


def _tag_match(tags, query):
    if isinstance(query, str):
        return query in tags
    if isinstance(query, dict) and isinstance(query.get("$and"), list):
        return all(_tag_match(tags, q) for q in query["$and"])
    if isinstance(query, dict) and isinstance(query.get("$or"), list):
        return any(_tag_match(tags, q) for q in query["$or"])
    if isinstance(query, list):
        return all(_tag_match(tags, q) for q in query)
    raise InvalidInput('"tags" must be a string, an array, or {"$and"|"$or": [...]}')


def _property_match(props, query):
    if not isinstance(query, dict):
        raise InvalidInput('"properties" must be a JSON object')
    for key, want in query.items():
        if key in ("$and", "$or") and isinstance(want, list):
            results = [_property_match(props, q) for q in want]
            if not (all(results) if key == "$and" else any(results)):
                return False
        elif want is True:
            if key not in props:
                return False
        elif want is False:
            if key in props:
                return False
        elif props.get(key) != want:
            return False
    return True


def _starting(qs, value):
    """Check a find's `starting` against the kind of key its `next` gives (an integer or an ID)."""
    if qs.model._meta.pk.get_internal_type().endswith("AutoField"):
        valid = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT
    else:
        valid = isinstance(value, str)
    if not valid:
        raise InvalidInput('"starting" must be the "next" value of a previous reply')
    return value


def _find_filters(body):
    """Check a find's `tags` and `properties` queries up front; return them."""
    tags, props = body.get("tags"), body.get("properties")
    if tags is not None:
        _check_tag_query(tags)
    if props is not None:
        _property_match({}, props)
    return tags, props


def _paginate(qs, body, predicate, render):
    """Walk `qs` in pk order from `starting`, keep rows passing `predicate`, render `limit` of them."""
    limit = page_limit(body)
    starting = body.get("starting")
    if starting is not None:
        qs = qs.filter(pk__gte=_starting(qs, starting))
    results, next_key = [], None
    try:
        for row in qs.order_by("pk").iterator(chunk_size=500):
            if not predicate(row):
                continue
            if len(results) == limit:
                next_key = row.pk
                break
            results.append(render(row))
    except DatabaseError:
        raise InvalidInput("The query could not be evaluated (check name patterns)") from None
    return {"results": results, "next": next_key}


def _time_filter(qs, body, field):
    """A find's `created`/`modified` query, {"after"?: ms, "before"?: ms} (both inclusive, as DNAnexus's)."""
    query = body.get(field)
    if query is None:
        return qs
    if not isinstance(query, dict) or not set(query) <= {"after", "before"}:
        raise InvalidInput(f'Expected key "{field}" of input to be {{"after"?: ms, "before"?: ms}}')
    for key, lookup in (("after", "gte"), ("before", "lte")):
        if key in query:
            qs = qs.filter(**{f"{field}__{lookup}": get(query, key, int)})
    return qs


# System ------------------------------------------------------------------------


@api_method("system", "whoami")
def whoami(principal, body):
    data = {"id": principal.user.dx_id}
    fields = body.get("fields")
    if isinstance(fields, dict) and fields.get("clientIp"):
        data["clientIp"] = getattr(principal, "client_ip", "")
    return data


@api_method("system", "findProjects")
def find_projects(principal, body):
    level = Level.parse(body.get("level", "VIEW")) if body.get("level") is not None else Level.VIEW
    if level is None:
        raise InvalidInput('"level" must be one of VIEW, UPLOAD, CONTRIBUTE, ADMINISTER')
    qs = permissions.visible_projects(principal, level)
    if "name" in body:
        qs = qs.filter(name_query(body["name"]))
    if "id" in body:
        qs = qs.filter(pk__in=string_list(body, "id"))
    if body.get("billTo") is not None:
        bill_to = get(body, "billTo", (str, list))
        qs = qs.filter(bill_to__in=string_list(body, "billTo") if isinstance(bill_to, list) else [bill_to])
    if body.get("region") is not None:
        region = get(body, "region", (str, list))
        qs = qs.filter(region__in=string_list(body, "region") if isinstance(region, list) else [region])
    qs = _time_filter(_time_filter(qs, body, "created"), body, "modified")
    flags = {flag: get(body, flag, bool) for flag in ("containsPHI", "externalUploadRestricted") if flag in body}
    if body.get("public") is True:
        qs = qs.none()
    tags, props = _find_filters(body)
    wanted, options = describe_input(body)

    def predicate(c):
        return (
            (tags is None or _tag_match(c.tags, tags))
            and (props is None or _property_match(c.properties, props))
            and all(bool(c.flags.get(flag)) == value for flag, value in flags.items())
        )

    def render(c):
        row = {
            "id": c.pk,
            "level": Level(c.level).label,
            "public": False,
            "permissionSources": list(permissions.permission_sources(principal.user, c.pk)),
        }
        if wanted:
            row["describe"] = select_fields(describe_container(c, c.level), options)
        return row

    return _paginate(qs, body, predicate, render)


@api_method("system", "findDataObjects")
def find_data_objects(principal, body):
    qs = Placement.objects.select_related("obj", "obj__created_by")
    scope = body.get("scope")
    if scope is not None:
        if not isinstance(scope, dict) or not isinstance(scope.get("project"), str):
            raise InvalidInput('"scope" must be {"project": ID, "folder"?: path, "recurse"?: bool}')
        container = access_container(principal, scope["project"])
        qs = qs.filter(container=container)
        folder = actions.clean_folder(get(scope, "folder", str, "/"), "scope.folder")
        if get(scope, "recurse", bool, True):
            if folder != "/":
                qs = actions._subtree(qs, "folder", folder)
        else:
            qs = qs.filter(folder=folder)
    else:
        qs = qs.filter(container_id__in=permissions.visible_container_ids(principal))
    if body.get("class") is not None:
        qs = qs.filter(obj__cls=get(body, "class", str))
    if body.get("state") is not None:
        qs = qs.filter(obj__state=get(body, "state", str))
    visibility = get(body, "visibility", str, "visible")
    if visibility not in ("visible", "hidden", "either"):
        raise InvalidInput('"visibility" must be "visible", "hidden" or "either"')
    if visibility != "either":
        qs = qs.filter(hidden=(visibility == "hidden"))
    if "name" in body:
        qs = qs.filter(name_query(body["name"]))
    if "id" in body:
        qs = qs.filter(obj_id__in=string_list(body, "id"))
    types = body.get("type")
    if types is not None:
        _check_tag_query(types)
    tags, props = _find_filters(body)
    wanted, options = describe_input(body)
    parts = bool(options.get("parts") or (isinstance(options.get("fields"), dict) and options["fields"].get("parts")))

    def predicate(p):
        return (
            (tags is None or _tag_match(p.tags, tags))
            and (props is None or _property_match(p.properties, props))
            and (types is None or _tag_match(p.obj.types, types))
        )

    def render(p):
        row = {"project": p.container_id, "id": p.obj_id}
        if wanted:
            row["describe"] = select_fields(describe_placement(p, parts=parts), options)
        return row

    return _paginate(qs, body, predicate, render)


@api_method("system", "resolveDataObjects")
def resolve_data_objects(principal, body):
    objects = get(body, "objects", list)
    if len(objects) > 1000:
        raise InvalidInput('"objects" takes at most 1000 entries')
    default_project, default_folder = body.get("project"), body.get("folder", "/")
    results = []
    for item in objects:
        if not isinstance(item, dict):
            raise InvalidInput('Each entry of "objects" must be a JSON object')
        project = item.get("project", default_project)
        if "id" in item:
            try:
                placement = access_object(principal, item["id"], project=project)
                results.append([{"project": placement.container_id, "id": placement.obj_id}])
            except permissions.ResourceNotFound:
                results.append([])
            continue
        if not isinstance(project, str):
            raise InvalidInput('Each entry of "objects" needs a "project" ID (or give one for all)')
        container = access_container(principal, project)
        qs = Placement.objects.filter(container=container, name=get(item, "name", str))
        qs = qs.filter(folder=actions.clean_folder(item.get("folder", default_folder)))
        results.append([{"project": container.pk, "id": p.obj_id} for p in qs[:1000]])
    return {"results": results}


@api_method("system", "findGlobalWorkflows")
def find_global_workflows(principal, body):
    return {"results": [], "next": None}


@api_method("system", "describeDataObjects")
def describe_data_objects(principal, body):
    results = []
    for item in get(body, "objects", list):
        oid = item if isinstance(item, str) else item.get("id") if isinstance(item, dict) else None
        hint = item.get("project") if isinstance(item, dict) else None
        try:
            placement = access_object(principal, oid, project=hint)
            results.append({"describe": describe_placement(placement)})
        except permissions.ResourceNotFound:
            results.append({"error": {"type": "ResourceNotFound", "message": f"{oid} could not be found"}})
    return {"results": results}


# Users -------------------------------------------------------------------------


@api_method("user", "describe")
def user_describe(principal, user_id, body):
    user = access_user(principal, user_id)
    return user.describe(full=(user == principal.user))


@api_method("user", "update", write=True)
def user_update(principal, user_id, body):
    user = access_self(principal, user_id)
    if "sshPublicKey" in body:
        # null revokes the key; a string is kept byte for byte.
        actions.set_ssh_public_key(user, get(body, "sshPublicKey", (str, type(None))) or "")
    if "first" in body or "last" in body:
        actions.set_user_names(user, get(body, "first", str, None), get(body, "last", str, None))
    return {"id": user.dx_id}


# Orgs --------------------------------------------------------------------------


@api_method("org", "new", write=True)
def org_new(principal, body):
    permissions.require_personal_token(principal, "create orgs")
    org = actions.create_org(principal.user, get(body, "handle", str), get(body, "name", str, None))
    return {"id": org.id}


@api_method("org", "describe")
def org_describe(principal, org_id, body):
    org = access_org(principal, org_id)
    data = org.describe()
    data["level"] = org.role
    data["members"] = [
        {"id": m.user.dx_id, "level": m.level} for m in org.members.select_related("user").order_by("user__username")
    ]
    return data


@api_method("org", "invite", write=True)
def org_invite(principal, org_id, body):
    org = access_org(principal, org_id, admin=True)
    user, _ = actions.resolve_grantee(get(body, "invitee", str))
    if user is None:
        raise InvalidInput('"invitee" must be a user ID')
    actions.set_org_member(org, user, get(body, "level", str, OrgMember.MEMBER))
    return {"id": org.id}


@api_method("org", "removeMember", write=True)
def org_remove_member(principal, org_id, body):
    org = access_org(principal, org_id, admin=True)
    user = access_user(principal, get(body, "user", str))
    actions.remove_org_member(org, user)
    return {"id": org.id}


@api_method("org", "setMemberAccess", write=True)
def org_set_member_access(principal, org_id, body):
    org = access_org(principal, org_id, admin=True)
    for user_id, access in body.items():
        if not isinstance(access, dict):
            raise InvalidInput(f'The access for {user_id} must be {{"level": "ADMIN"|"MEMBER"}}')
        user = access_user(principal, user_id)
        if not OrgMember.objects.filter(org=org, user=user).exists():
            raise InvalidInput(f"{user_id} is not a member of {org.id}")
        actions.set_org_member(org, user, access.get("level"))
    return {"id": org.id}


# Projects and containers ---------------------------------------------------------


@api_method("project", "new", write=True)
def project_new(principal, body):
    permissions.require_personal_token(principal, "create projects")
    container = actions.create_container(
        principal.user,
        get(body, "name", str),
        summary=get(body, "summary", str, ""),
        description=get(body, "description", str, ""),
        tags=string_list(body, "tags", []),
        properties=string_map(body, "properties", default={}),
        region=get(body, "region", str, None),
        flags={flag: get(body, flag, bool) for flag in PROJECT_FLAGS if flag in body},
    )
    return {"id": container.pk}


def container_method(name, needed=Level.VIEW, write=False):
    """Register a handler for both /project-x/<name> and /container-x/<name>."""

    def register(fn):
        def handler(principal, container_id, body):
            return fn(principal, access_container(principal, container_id, needed), body)

        for cls in CONTAINER_CLASSES:
            api_method(cls, name, write=write)(handler)
        return fn

    return register


def _creator_from_caller(principal, instance):
    """Reuse the caller's already-loaded user as `created_by` when they are the creator (spares a query)."""
    if instance.created_by_id is not None and instance.created_by_id == principal.user.pk:
        instance.created_by = principal.user


@container_method("describe")
def project_describe(principal, container, body):
    _creator_from_caller(principal, container)
    data = describe_container(container, container.level, folders=bool(body.get("folders")))
    return select_fields(data, body)


@container_method("update", Level.CONTRIBUTE, write=True)
def project_update(principal, container, body):
    flags = {flag: get(body, flag, bool) for flag in PROJECT_FLAGS if flag in body}
    if flags:  # a project's settings are its administrators'
        container = access_container(principal, container.pk, Level.ADMINISTER)
    actions.update_container(
        container,
        get(body, "name", str, None),
        get(body, "summary", str, None),
        get(body, "description", str, None),
        flags=flags,
    )
    return {"id": container.pk}


@container_method("listFolder")
def project_list_folder(principal, container, body):
    folder = actions.clean_folder(get(body, "folder", str, "/"))
    if not actions.folder_exists(container, folder):
        raise actions.folder_not_found(container, folder)
    only = get(body, "only", str, "all")
    if only not in ("all", "folders", "objects"):
        raise InvalidInput('"only" must be "all", "folders" or "objects"')
    wanted, options = describe_input(body)
    reply = {}
    if only in ("all", "folders"):
        reply["folders"] = list(container.folders.filter(parent=folder).order_by("path").values_list("path", flat=True))
    if only in ("all", "objects"):
        qs = container.placements.filter(folder=folder).select_related("obj", "obj__created_by").order_by("name")
        if not get(body, "includeHidden", bool, False):
            qs = qs.filter(hidden=False)
        reply["objects"] = [
            {"id": p.obj_id, **({"describe": select_fields(describe_placement(p), options)} if wanted else {})}
            for p in qs
        ]
    return reply


@container_method("newFolder", Level.UPLOAD, write=True)
def project_new_folder(principal, container, body):
    actions.new_folder(container, get(body, "folder", str), get(body, "parents", bool, False))
    return {"id": container.pk}


@container_method("removeFolder", Level.CONTRIBUTE, write=True)
def project_remove_folder(principal, container, body):
    actions.remove_folder(container, get(body, "folder", str), get(body, "recurse", bool, False))
    return {"id": container.pk, "completed": True}


@container_method("renameFolder", Level.CONTRIBUTE, write=True)
def project_rename_folder(principal, container, body):
    # `dx mv /folder /new_name` sends the full new path as "newpath"; the API's own form is "name".
    actions.rename_folder(
        container, get(body, "folder", str), get(body, "name", str, None), get(body, "newpath", str, None)
    )
    return {"id": container.pk}


@container_method("removeObjects", Level.CONTRIBUTE, write=True)
def project_remove_objects(principal, container, body):
    actions.remove_objects(container, get(body, "objects", list))
    return {"id": container.pk}


@container_method("move", Level.CONTRIBUTE, write=True)
def project_move(principal, container, body):
    actions.move(
        container, string_list(body, "objects", []), string_list(body, "folders", []), get(body, "destination", str)
    )
    return {"id": container.pk}


@container_method("clone", Level.VIEW, write=True)
def project_clone(principal, container, body):
    dest = access_container(principal, get(body, "project", str), Level.UPLOAD)
    exists = actions.clone(
        container,
        dest,
        string_list(body, "objects", []),
        string_list(body, "folders", []),
        get(body, "destination", str, "/"),
        get(body, "parents", bool, False),
    )
    return {"id": container.pk, "project": dest.pk, "exists": exists}


@container_method("invite", Level.ADMINISTER, write=True)
def project_invite(principal, container, body):
    grantee = actions.invite(container, get(body, "invitee", str), get(body, "level", str))
    return {"id": grantee, "state": "ACCEPTED"}


@container_method("decreasePermissions", Level.ADMINISTER, write=True)
def project_decrease_permissions(principal, container, body):
    actions.decrease_permissions(container, body)
    return {"id": container.pk}


@container_method("leave", Level.VIEW, write=True)
def project_leave(principal, container, body):
    actions.leave(container, principal.user)
    return {"id": container.pk}


# Not write=True: the action commits the jobs' termination, then waits for their workers.
@container_method("destroy", Level.ADMINISTER)
def project_destroy(principal, container, body):
    if not container.is_project:
        raise PermissionDenied("Workspaces are destroyed by the platform")
    project_id = container.pk
    actions.destroy_project(principal, container, terminate_jobs=get(body, "terminateJobs", bool, False))
    return {"id": project_id}


def tagging_methods(register, id_of):
    """addTags, removeTags and setProperties (CONTRIBUTE), alike for every class that has them.

    `register` is the class's method decorator (container_method, object_method, job_method);
    `id_of` gives the ID the answer names from what the decorator hands the handler.
    """

    @register("addTags", Level.CONTRIBUTE, write=True)
    def add_tags(principal, target, body):
        actions.change_tags(target, add=string_list(body, "tags"))
        return {"id": id_of(target)}

    @register("removeTags", Level.CONTRIBUTE, write=True)
    def remove_tags(principal, target, body):
        actions.change_tags(target, remove=string_list(body, "tags"))
        return {"id": id_of(target)}

    @register("setProperties", Level.CONTRIBUTE, write=True)
    def set_properties(principal, target, body):
        actions.set_properties(target, string_map(body, "properties", nullable=True))
        return {"id": id_of(target)}


tagging_methods(container_method, lambda container: container.pk)


# Data objects ----------------------------------------------------------------------


def object_method(name, needed=Level.VIEW, write=False, classes=OBJECT_CLASSES):
    """Register a handler for /<class>-x/<name> on data objects, reached through the `project` hint."""

    def register(fn):
        def handler(principal, object_id, body):
            hint = body.get("project") if isinstance(body.get("project"), str) else None
            return fn(principal, access_object(principal, object_id, needed, project=hint), body)

        for cls in classes:
            api_method(cls, name, write=write)(handler)
        return fn

    return register


@object_method("describe")
def object_describe(principal, placement, body):
    _creator_from_caller(principal, placement.obj)
    parts = bool(body.get("parts") or (isinstance(body.get("fields"), dict) and body["fields"].get("parts")))
    return select_fields(describe_placement(placement, parts=parts), body)


@object_method("rename", Level.CONTRIBUTE, write=True)
def object_rename(principal, placement, body):
    actions.rename(placement, get(body, "name", str))
    return {"id": placement.obj_id}


tagging_methods(object_method, lambda placement: placement.obj_id)


@object_method("setVisibility", Level.CONTRIBUTE, write=True)
def object_set_visibility(principal, placement, body):
    actions.set_visibility(placement, get(body, "hidden", bool))
    return {"id": placement.obj_id}


@object_method("getDetails")
def object_get_details(principal, placement, body):
    return placement.obj.details


@api_method("file", "new", write=True)
def file_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    placement = actions.new_object(
        principal.user,
        container,
        "file",
        **actions.new_object_fields(body, "Untitled file"),
        created_by_job=principal.job_id,
        media=actions._check_text(get(body, "media", str, ""), '"media"', 255),
    )
    return {"id": placement.obj_id}


@object_method("upload", Level.UPLOAD, write=True, classes=("file",))
def file_upload(principal, placement, body):
    index = get(body, "index", int, 1)
    size = get(body, "size", int, None)
    md5 = get(body, "md5", str, None)
    actions.request_upload(placement.obj, index, size, md5)
    url, expires = transfer.upload_url(principal.request, placement.obj_id, index, size, md5 and md5.lower())
    return {"url": url, "headers": {}, "expires": expires}


@object_method("close", Level.UPLOAD, write=True, classes=("file",))
def file_close(principal, placement, body):
    actions.close_file(placement.obj)
    return {"id": placement.obj_id}


@object_method("download", Level.VIEW, classes=("file",))
def file_download(principal, placement, body):
    hint = body.get("project")
    if isinstance(hint, str) and hint != placement.container_id:  # DNAnexus: the file must be in that project
        raise permissions.ResourceNotFound(f"{placement.obj_id} could not be found in {hint}")
    if placement.obj.state != DataObject.CLOSED:
        raise actions.InvalidState(f"{placement.obj_id} is {placement.obj.state}; only closed files can be downloaded")
    filename = actions.clean_name(get(body, "filename", str, placement.name), "filename")
    if get(body, "preauthenticated", bool, False):  # good for whoever holds it, for `duration` seconds
        duration = get(body, "duration", int, settings.DXWEB_PREAUTHENTICATED_URL_TTL)
        if duration <= 0:
            raise InvalidInput("duration must be a positive number of seconds")
        url, expires = transfer.download_url(
            principal.request, placement.obj_id, filename, ttl=min(duration, settings.DXWEB_DOWNLOAD_URL_MAX_TTL)
        )
    else:  # good while the caller's token is
        url, expires = transfer.download_url(
            principal.request, placement.obj_id, filename, token_id=principal.token_id, project=placement.container_id
        )
    return {"url": url, "headers": {}, "expires": expires}
