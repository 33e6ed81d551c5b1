"""Records, the generic data object, and the types/details methods every data object class shares.

A record has no data: it is metadata (details, types, tags, properties, visibility) placed in folders
like any other object, open until closed. Everything but creation and close goes through the shared
data-object methods of projects.api (describe, rename, tags, properties, visibility, clone, move...).
"""

from dxweb.api import api_method
from dxweb.errors import InvalidInput, InvalidState
from dxweb.validation import get, string_list

from . import actions, permissions
from .api import OBJECT_CLASSES, object_method
from .models import DESCRIBERS, DataObject, Level, Placement, now_ms
from .permissions import access_container, access_object

LINK = "$dnanexus_link"


def links_in(details):
    """The object ids named by `$dnanexus_link`s anywhere in `details` (in order, once each)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if LINK in value and len(value) == 1:
                target = value[LINK]
                ref = target.get("id") if isinstance(target, dict) else target
                if not isinstance(ref, str):
                    raise InvalidInput(f'A "{LINK}" in "details" must name an object ID or {{"id", "project"?}}')
                if ref not in found:
                    found.append(ref)
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(details)
    return found


def check_links(principal, details):
    """Refuse details that link to an object the caller cannot see (missing and hidden read the same)."""
    ids = [i for i in links_in(details) if not i.startswith(("job-", "analysis-"))]
    if not ids:
        return
    seen = set(
        Placement.objects.filter(
            obj_id__in=ids, container_id__in=permissions.visible_container_ids(principal)
        ).values_list("obj_id", flat=True)
    )
    missing = [i for i in ids if i not in seen]
    if missing:
        raise InvalidInput(f'The object {missing[0]} linked from "details" could not be found')


def _initial(principal, body):
    """The metadata `initializeFrom` copies: {"id": record-x, "project": project-x}."""
    source = body.get("initializeFrom")
    if source is None:
        return {}
    if not isinstance(source, dict) or not isinstance(source.get("id"), str):
        raise InvalidInput('"initializeFrom" must be {"id": record ID, "project": project ID}')
    hint = source.get("project") if isinstance(source.get("project"), str) else None
    placement = access_object(principal, source["id"], Level.VIEW, project=hint)
    if placement.obj.cls != "record":
        raise InvalidInput(f'"initializeFrom" must name a record; {source["id"]} is a {placement.obj.cls}')
    return {
        "name": placement.name,
        "folder": placement.folder,
        "hidden": placement.hidden,
        "tags": list(placement.tags),
        "types": list(placement.obj.types),
        "properties": dict(placement.properties),
        "details": placement.obj.details,
    }


@api_method("record", "new", write=True)
def record_new(principal, body):
    container = access_container(principal, get(body, "project", str), Level.UPLOAD)
    fields = _initial(principal, body)
    given = actions.new_object_fields(body, fields.get("name", "Untitled record"))
    for key, value in given.items():
        if key in body or key not in fields:
            fields[key] = value
    if fields.get("details") is not None:
        check_links(principal, fields["details"])
    close = get(body, "close", bool, False)
    placement = actions.new_object(
        principal.user,
        container,
        "record",
        **fields,
        created_by_job=principal.job_id,
        state=DataObject.CLOSED if close else DataObject.OPEN,
    )
    return {"id": placement.obj_id}


@object_method("close", Level.UPLOAD, write=True, classes=("record",))
def record_close(principal, placement, body):
    # Closing a closed record is a no-op on DNAnexus too.
    DataObject.objects.filter(pk=placement.obj_id).update(state=DataObject.CLOSED)
    Placement.objects.filter(pk=placement.pk).update(modified=now_ms())
    return {"id": placement.obj_id}


def object_set_details(principal, object_id, body):
    """/<class>-x/setDetails: the whole input is the new details, as dxpy sends it (no project hint)."""
    placement = access_object(principal, object_id, Level.UPLOAD)
    check_links(principal, body)
    actions.set_details(placement.obj, body)
    return {"id": placement.obj_id}


for _cls in OBJECT_CLASSES:
    api_method(_cls, "setDetails", write=True)(object_set_details)


def _change_types(placement, body, add):
    types = string_list(body, "types")
    actions.clean_tags(types)
    obj = placement.obj
    if obj.state != DataObject.OPEN:
        raise InvalidState(f"{obj.pk} is not in the open state (it is {obj.state}); types are changed while it is open")
    current = list(obj.types)
    if add:
        current += [t for t in types if t not in current]
    else:
        current = [t for t in current if t not in types]
    if DataObject.objects.filter(pk=obj.pk, state=DataObject.OPEN).update(types=current) != 1:
        raise InvalidState(f"{obj.pk} is not in the open state; types are changed while it is open")
    Placement.objects.filter(obj_id=obj.pk).update(modified=now_ms())
    return {"id": placement.obj_id}


@object_method("addTypes", Level.UPLOAD, write=True, classes=OBJECT_CLASSES)
def object_add_types(principal, placement, body):
    return _change_types(placement, body, add=True)


@object_method("removeTypes", Level.UPLOAD, write=True, classes=OBJECT_CLASSES)
def object_remove_types(principal, placement, body):
    return _change_types(placement, body, add=False)


def describe_links(placement, data):
    """Fill describe's `links` with the objects the details link to."""
    try:
        data["links"] = links_in(placement.obj.details)
    except InvalidInput:
        data["links"] = []


for _cls in ("record", "file"):
    DESCRIBERS.setdefault(_cls, describe_links)


@object_method("listProjects", classes=OBJECT_CLASSES)
def object_list_projects(principal, placement, body):
    """{project ID: the caller's level} for each project the caller can see the object in."""
    containers = Placement.objects.filter(
        obj_id=placement.obj_id, container_id__in=permissions.visible_container_ids(principal)
    ).values_list("container_id", flat=True)
    levels = {cid: permissions.level_of(principal, cid) for cid in containers}
    return {cid: Level(level).name for cid, level in levels.items() if level is not None}
