"""State changes on projects, orgs, folders and files; pages and API methods share them."""

import hashlib
import logging
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Length, Substr

from dxweb.errors import InvalidInput, InvalidState, PayloadTooLarge, ResourceNotFound
from dxweb.ids import HANDLE_RE, new_id
from dxweb.validation import get, string_list, string_map

from .models import (
    ApiToken,
    Container,
    DataObject,
    FilePart,
    Folder,
    Grant,
    Level,
    Org,
    OrgMember,
    Placement,
    User,
    now_ms,
)
from .signals import project_deleting, project_destroying

log = logging.getLogger(__name__)

MAX_NAME = 255
MAX_PATH = 1024
MAX_TAG = 256
MAX_TAGS = 100
MAX_PROPERTIES = 100


def _check_text(value, what, limit, field=None):
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{what} is too long ({len(value)} characters; at most {limit})", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{what} must not contain NUL or other control characters", field=field)
    return value


def clean_name(name, what="name"):
    """Return a valid object or project name, or raise InvalidInput."""
    _check_text(name, f'"{what}"', MAX_NAME, field=what)
    if not name.strip():
        raise InvalidInput(f'"{what}" must not be empty', field=what)
    if "/" in name:
        raise InvalidInput(f'"{what}" must not contain "/"', field=what)
    if name in (".", ".."):
        raise InvalidInput(f'"{what}" must not be "." or ".."', field=what)
    return name


def clean_folder(path, what="folder"):
    """Return a normalised absolute folder path, or raise InvalidInput."""
    _check_text(path, f'"{what}"', MAX_PATH, field=what)
    if not path.startswith("/"):
        raise InvalidInput(f'"{what}" must be an absolute path starting with "/"', field=what)
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise InvalidInput(f'"{what}" must not contain "." or ".." components', field=what)
        if len(part) > MAX_NAME:
            raise InvalidInput(f'Each component of "{what}" must be at most {MAX_NAME} characters', field=what)
    return "/" + "/".join(parts)


def parent_of(path):
    return "/" if path.count("/") <= 1 else path.rsplit("/", 1)[0]


def clean_tags(tags):
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidInput(f'"tags" must be an array of at most {MAX_TAGS} strings', field="tags")
    for tag in tags:
        _check_text(tag, "Each tag", MAX_TAG, field="tags")
        if not tag:
            raise InvalidInput("Tags must not be empty", field="tags")
    return tags


def clean_properties(properties, nullable=False):
    if not isinstance(properties, dict) or len(properties) > MAX_PROPERTIES:
        raise InvalidInput(f'"properties" must be a JSON object of at most {MAX_PROPERTIES} keys', field="properties")
    for key, value in properties.items():
        _check_text(key, "A property key", MAX_TAG, field="properties")
        if value is None and nullable:
            continue
        _check_text(value, f'The value of property "{key}"', 8192, field="properties")
    return properties


def touch(container):
    Container.objects.filter(pk=container.pk).update(modified=now_ms())


# Projects and containers ---------------------------------------------------


def create_container(
    user, name, kind=Container.PROJECT, summary="", description="", tags=(), properties=None, region=None, flags=None
):
    """Create a project (or workspace) with its root folder; its creator gets ADMINISTER."""
    if region is not None and region not in settings.DXWEB_REGIONS:
        raise InvalidInput(
            f'The region "{region}" is not available; this server has {", ".join(settings.DXWEB_REGIONS)}'
        )
    container = Container.objects.create(
        region=region or settings.DXWEB_REGION,
        flags=dict(flags or {}),
        id=new_id(kind),
        kind=kind,
        name=clean_name(name),
        summary=_check_text(summary, '"summary"', 1024),
        description=_check_text(description, '"description"', 100_000),
        tags=clean_tags(list(tags)),
        properties=clean_properties(properties or {}),
        created_by=user,
        bill_to=user.dx_id if user else "",
    )
    Folder.objects.create(container=container, path="/", parent="")
    if user is not None:
        Grant.objects.create(container=container, user=user, level=Level.ADMINISTER)
    return container


def update_container(container, name=None, summary=None, description=None, flags=None):
    """Change a project's name, texts and settings (`flags`: {PROJECT_FLAGS name: bool}; ADMINISTER's)."""
    for flag, value in (flags or {}).items():
        if flag == "containsPHI" and not value and container.flags.get(flag):
            raise InvalidInput("containsPHI cannot be unset once a project contains PHI")
        container.flags[flag] = value
    if name is not None:
        container.name = clean_name(name)
    if summary is not None:
        container.summary = _check_text(summary, '"summary"', 1024)
    if description is not None:
        container.description = _check_text(description, '"description"', 100_000)
    container.modified = now_ms()
    container.save(update_fields=["name", "summary", "description", "flags", "modified"])
    return container


def change_tags(target, add=(), remove=()):
    """Add or remove tags on a container or a placement."""
    tags = list(target.tags)
    for tag in clean_tags(list(add)):
        if tag not in tags:
            tags.append(tag)
    removing = set(clean_tags(list(remove)))
    target.tags = [t for t in tags if t not in removing]
    target.modified = now_ms()
    target.save(update_fields=["tags", "modified"])


def set_properties(target, properties):
    """Set (or, with a null value, remove) properties on a container or a placement."""
    props = dict(target.properties)
    for key, value in clean_properties(properties, nullable=True).items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    target.properties = props
    target.modified = now_ms()
    target.save(update_fields=["properties", "modified"])


def destroy_container(container):
    destroy_containers([container.pk])


def destroy_containers(ids):
    """Delete containers with everything in them (a few statements for any number of them)."""
    obj_ids = list(Placement.objects.filter(container_id__in=ids).values_list("obj_id", flat=True))
    Container.objects.filter(pk__in=ids).delete()
    collect_orphans(obj_ids)


def destroy_project(principal, container, terminate_jobs=False):
    """Destroy a project with everything in it, the records other apps keep in it included.

    Apps with work running in it end it first (project_destroying): unfinished jobs make it
    InvalidState (as on DNAnexus) unless `terminate_jobs`, and are then terminated and waited for
    (jobs.ending.end_project_jobs). That commits before the wait: call it outside a transaction.
    """
    project_destroying.send(sender=Container, principal=principal, container=container, terminate_jobs=terminate_jobs)
    with transaction.atomic():
        replies = project_deleting.send(sender=Container, principal=principal, container=container)
        others = [other for _, containers in replies for other in containers or ()]
        destroy_container(container)
        for other in others:
            destroy_container(other)


# Members ---------------------------------------------------------------------


def resolve_grantee(grantee):
    """Return (user, org) for a `user-x` or `org-x` ID, or raise InvalidInput."""
    if isinstance(grantee, str) and grantee.startswith("user-"):
        user = User.objects.filter(username=grantee[5:], is_active=True).first()
        if user:
            return user, None
    elif isinstance(grantee, str) and grantee.startswith("org-"):
        org = Org.objects.filter(pk=grantee).first()
        if org:
            return None, org
    raise InvalidInput(
        f'Expected key "invitee" of input to name an existing user or org (user-<handle>, org-<handle>), '
        f"not {grantee!r:.80}"
    )


def invite(container, grantee, level):
    """Grant `level` to a user or org (replacing an existing grant); return the grantee ID."""
    if not container.is_project:
        raise InvalidState("Only projects have members")
    lvl = Level.parse(level)
    if lvl is None:
        raise InvalidInput('Expected key "level" of input to be one of VIEW, UPLOAD, CONTRIBUTE, ADMINISTER')
    user, org = resolve_grantee(grantee)
    existing = Grant.objects.filter(container=container, user=user, org=org).first()
    if (
        existing
        and existing.level == Level.ADMINISTER
        and lvl != Level.ADMINISTER
        and _admins_after(container, existing.pk) == 0
    ):
        raise InvalidState("A project must keep at least one ADMINISTER member")
    Grant.objects.update_or_create(container=container, user=user, org=org, defaults={"level": lvl})
    touch(container)
    return user.dx_id if user else org.id


def _admins_after(container, removed_pk):
    """Count the ADMINISTER grants left once grant `removed_pk` is gone."""
    return Grant.objects.filter(container=container, level=Level.ADMINISTER).exclude(pk=removed_pk).count()


def decrease_permissions(container, changes):
    """Lower or revoke grants: {grantee: level or null}. At least one ADMINISTER grant stays."""
    if not isinstance(changes, dict):
        raise InvalidInput("Expected input to be a map of user or org IDs to a level or null")
    for grantee, level in changes.items():
        user, org = resolve_grantee(grantee)
        grant = Grant.objects.filter(container=container, user=user, org=org).first()
        if grant is None:
            continue
        if level is None:
            new_level = None
        else:
            new_level = Level.parse(level)
            if new_level is None:
                raise InvalidInput(
                    f'Expected key "{grantee}" of input to be one of VIEW, UPLOAD, CONTRIBUTE, ADMINISTER or null'
                )
            if new_level > grant.level:
                raise InvalidInput(f"decreasePermissions cannot raise {grantee} to {level}; use invite")
        if (
            grant.level == Level.ADMINISTER
            and new_level != Level.ADMINISTER
            and _admins_after(container, grant.pk) == 0
        ):
            raise InvalidState("A project must keep at least one ADMINISTER member")
        if new_level is None:
            grant.delete()
        else:
            grant.level = new_level
            grant.save(update_fields=["level"])
    touch(container)


def leave(container, user):
    grant = Grant.objects.filter(container=container, user=user).first()
    if grant is None:
        raise InvalidState(f"{user.dx_id} has no direct membership in {container.pk} to leave")
    if grant.level == Level.ADMINISTER and _admins_after(container, grant.pk) == 0:
        raise InvalidState("The last ADMINISTER member cannot leave; destroy the project instead")
    grant.delete()


# Orgs --------------------------------------------------------------------------


def create_org(user, handle, name=None):
    if not isinstance(handle, str) or not HANDLE_RE.match(handle):
        raise InvalidInput('"handle" must be 1-63 lowercase letters, digits, "." or "_"')
    org_id = f"org-{handle}"
    try:
        with transaction.atomic():
            org = Org.objects.create(id=org_id, handle=handle, name=clean_name(name or handle), created_by=user)
    except IntegrityError:
        raise InvalidInput(f"The handle {handle!r} is already taken") from None
    OrgMember.objects.create(org=org, user=user, level=OrgMember.ADMIN)
    return org


def set_org_member(org, user, level):
    if level not in (OrgMember.ADMIN, OrgMember.MEMBER):
        raise InvalidInput('"level" must be ADMIN or MEMBER')
    if level == OrgMember.MEMBER:
        others = OrgMember.objects.filter(org=org, level=OrgMember.ADMIN).exclude(user=user)
        if not others.exists():
            raise InvalidState("An org must keep at least one ADMIN")
    OrgMember.objects.update_or_create(org=org, user=user, defaults={"level": level})


def remove_org_member(org, user):
    member = OrgMember.objects.filter(org=org, user=user).first()
    if member is None:
        raise InvalidInput(f"{user.dx_id} is not a member of {org.id}")
    if (
        member.level == OrgMember.ADMIN
        and not OrgMember.objects.filter(org=org, level=OrgMember.ADMIN).exclude(pk=member.pk).exists()
    ):
        raise InvalidState("An org must keep at least one ADMIN")
    member.delete()


# Folders -----------------------------------------------------------------------


def folder_not_found(container, path):
    """DNAnexus's answer for a folder that is not there; `details` names the path."""
    return ResourceNotFound(f"The specified folder could not be found in {container.pk}", details={"folder": path})


def folder_exists(container, path):
    return path == "/" or Folder.objects.filter(container=container, path=path).exists()


def new_folder(container, path, parents=False):
    path = clean_folder(path)
    if path == "/":
        if parents:
            return path
        raise InvalidInput("The root folder already exists")
    parent = parent_of(path)
    if not folder_exists(container, parent):
        if not parents:
            raise folder_not_found(container, parent)
        new_folder(container, parent, parents=True)
    _, created = Folder.objects.get_or_create(container=container, path=path, defaults={"parent": parent})
    if not created and not parents:
        raise InvalidInput(f'The folder "{path}" already exists')
    touch(container)
    return path


def _subtree(qs, field, path):
    """Rows of `qs` whose `field` is the folder `path` or lies below it."""
    prefix = path.rstrip("/") + "/"
    # startswith is LIKE, which SQLite compares without case: "/Data/x" is not below "/data".
    head = Substr(field, 1, len(prefix))
    return qs.alias(_head=head).filter(Q(**{field: path}) | Q(**{f"{field}__startswith": prefix}, _head=prefix))


def remove_folder(container, path, recurse=False):
    """Remove a folder (with its contents when `recurse`); "/" with recurse empties the project and keeps the root."""
    path = clean_folder(path)
    if path == "/" and not recurse:
        raise InvalidInput("The root folder cannot be removed")
    if not Folder.objects.filter(container=container, path=path).exists():
        raise folder_not_found(container, path)
    placements = _subtree(Placement.objects.filter(container=container), "folder", path)
    folders = _subtree(Folder.objects.filter(container=container), "path", path)
    if not recurse and (placements.exists() or folders.exclude(path=path).exists()):
        raise InvalidState(f'The folder "{path}" is not empty; remove it with recurse')
    obj_ids = list(placements.values_list("obj_id", flat=True))
    placements.delete()
    folders.exclude(path="/").delete()
    collect_orphans(obj_ids)
    touch(container)


def remove_objects(container, object_ids):
    if not isinstance(object_ids, list) or not all(isinstance(o, str) for o in object_ids):
        raise InvalidInput('"objects" must be an array of object IDs')
    found = Placement.objects.filter(container=container, obj_id__in=object_ids)
    missing = set(object_ids) - set(found.values_list("obj_id", flat=True))
    if missing:
        raise ResourceNotFound(f"Not found in {container.pk}: {', '.join(sorted(missing)[:5])}")
    found.delete()
    collect_orphans(object_ids)
    touch(container)


def collect_orphans(obj_ids):
    """Delete data objects no container holds any more, and their blobs once committed."""
    orphans = DataObject.objects.filter(pk__in=list(obj_ids), placements__isnull=True)
    blobs = list(FilePart.objects.filter(file__in=orphans).exclude(blob="").values_list("blob", flat=True))
    orphans.delete()
    if blobs:
        transaction.on_commit(lambda: _delete_blobs(blobs))


def _delete_blobs(blobs):
    for blob in blobs:
        try:
            default_storage.delete(blob)
        except OSError:
            log.warning("could not delete blob %s", blob)


def move(container, objects, folders, destination):
    """Move objects and folders (with their contents) into `destination`."""
    destination = clean_folder(destination, "destination")
    if not folder_exists(container, destination):
        raise folder_not_found(container, destination)
    if not isinstance(objects, list) or not isinstance(folders, list):
        raise InvalidInput('"objects" and "folders" must be arrays')
    placements = Placement.objects.filter(container=container, obj_id__in=objects)
    if placements.count() != len(set(objects)):
        raise ResourceNotFound(f"Some objects to move were not found in {container.pk}")
    sources = [clean_folder(f, "folders") for f in folders]
    for src in sources:
        if src == "/":
            raise InvalidInput("The root folder cannot be moved")
        if not Folder.objects.filter(container=container, path=src).exists():
            raise folder_not_found(container, src)
        if destination == src or destination.startswith(src + "/"):
            raise InvalidInput(f'Cannot move "{src}" into itself')
        target = destination.rstrip("/") + "/" + src.rsplit("/", 1)[1]
        if folder_exists(container, target):
            raise InvalidInput(f'The folder "{target}" already exists')
        _check_relocation(container, src, target)
    placements.update(folder=destination, modified=now_ms())
    for src in sources:
        target = destination.rstrip("/") + "/" + src.rsplit("/", 1)[1]
        _relocate_folder(container, src, target)
    touch(container)


def rename_folder(container, path, name=None, newpath=None):
    """Rename a folder: to `name` in its parent, or (`dx mv /a /b` sends it) to the full path `newpath`."""
    folder = clean_folder(path)
    if folder == "/":
        raise InvalidInput("The root folder cannot be renamed")
    if not folder_exists(container, folder):
        raise folder_not_found(container, folder)
    if newpath is not None:
        target = clean_folder(newpath, "newpath")
        if not folder_exists(container, parent_of(target)):
            raise folder_not_found(container, parent_of(target))
        if target == folder or target.startswith(folder + "/"):
            raise InvalidInput(f'Cannot move "{folder}" into itself')
    elif name is not None:
        target = parent_of(folder).rstrip("/") + "/" + clean_name(name)
    else:
        raise InvalidInput('Expected input to have property "name" or "newpath"')
    if folder_exists(container, target):
        raise InvalidInput(f'The folder "{target}" already exists')
    _check_relocation(container, folder, target)
    _relocate_folder(container, folder, target)
    touch(container)
    return target


def _check_relocation(container, src, target):
    """Refuse a move of `src` to `target` that would make a path in its subtree too long."""
    subtree = _subtree(Folder.objects.filter(container=container), "path", src)
    deepest = max([len(src), *subtree.values_list(Length("path"), flat=True)])
    if len(target) + deepest - len(src) > MAX_PATH:
        raise InvalidInput(f'Moving "{src}" to "{target}" would make a path longer than {MAX_PATH} characters')


def _relocate_folder(container, src, target):
    for folder in _subtree(Folder.objects.filter(container=container), "path", src):
        folder.path = target + folder.path[len(src) :]
        folder.parent = parent_of(folder.path)
        folder.save(update_fields=["path", "parent"])
    for placement in _subtree(Placement.objects.filter(container=container), "folder", src):
        placement.folder = target + placement.folder[len(src) :]
        placement.save(update_fields=["folder"])


def clone(source, dest, objects, folders, destination, parents=False):
    """Place closed objects (and whole folders) of `source` into `dest` under `destination`."""
    # DNAnexus's words: data does not cross regions (between projects; workspaces are in every region here)
    if source.is_project and dest.is_project and source.region != dest.region:
        raise InvalidInput("Cannot clone into a project in a different region")
    destination = clean_folder(destination, "destination")
    if not folder_exists(dest, destination):
        if not parents:
            raise folder_not_found(dest, destination)
        new_folder(dest, destination, parents=True)
    placements = list(Placement.objects.filter(container=source, obj_id__in=objects).select_related("obj"))
    if len(placements) != len(set(objects)):
        raise ResourceNotFound(f"Some objects to clone were not found in {source.pk}")
    exists = []
    for placement in placements:
        if placement.obj.state != DataObject.CLOSED:
            raise InvalidState(f"{placement.obj_id} is not closed and cannot be cloned")
    for placement in placements:
        if _place(dest, placement, destination) is None:
            exists.append(placement.obj_id)
    for src in [clean_folder(f, "folders") for f in folders]:
        if not folder_exists(source, src):
            raise folder_not_found(source, src)
        base = destination.rstrip("/") + "/" + src.rsplit("/", 1)[1] if src != "/" else destination
        if src != "/" and folder_exists(dest, base):
            raise InvalidInput(f'The folder "{base}" already exists in {dest.pk}; a folder is not cloned onto another')
        for folder in _subtree(Folder.objects.filter(container=source), "path", src):
            new_folder(dest, _rebase(folder.path, src, base), parents=True)
        for placement in _subtree(Placement.objects.filter(container=source), "folder", src).select_related("obj"):
            if placement.obj.state == DataObject.CLOSED:
                if _place(dest, placement, _rebase(placement.folder, src, base)) is None:
                    exists.append(placement.obj_id)
    touch(dest)
    return exists


def _rebase(path, src, base):
    """Where `path` (the folder `src` or one below it) lands when `src` is copied to `base`."""
    rest = path[len(src.rstrip("/")) :]
    return clean_folder(base.rstrip("/") + rest) if rest else base


def _place(container, placement, folder):
    try:
        with transaction.atomic():
            return Placement.objects.create(
                container=container,
                obj=placement.obj,
                folder=folder,
                name=placement.name,
                hidden=placement.hidden,
                tags=list(placement.tags),
                properties=dict(placement.properties),
            )
    except IntegrityError:
        return None


# Data objects --------------------------------------------------------------------


def new_object(
    user,
    container,
    cls,
    name,
    folder="/",
    parents=False,
    hidden=False,
    tags=(),
    types=(),
    properties=None,
    details=None,
    state=DataObject.OPEN,
    **fields,
):
    """Create a data object placed in `container`."""
    folder = clean_folder(folder)
    if not folder_exists(container, folder):
        if not parents:
            raise folder_not_found(container, folder)
        new_folder(container, folder, parents=True)
    if details is not None and not isinstance(details, (dict, list)):
        raise InvalidInput('"details" must be a JSON object or array')
    obj = DataObject.objects.create(
        id=new_id(cls),
        cls=cls,
        state=state,
        types=clean_tags(list(types)),
        details=details or {},
        created_by=user,
        **fields,
    )
    placement = Placement.objects.create(
        container=container,
        obj=obj,
        folder=folder,
        name=clean_name(name),
        hidden=bool(hidden),
        tags=clean_tags(list(tags)),
        properties=clean_properties(properties or {}),
    )
    touch(container)
    return placement


def rename(placement, name):
    placement.name = clean_name(name)
    placement.modified = now_ms()
    placement.save(update_fields=["name", "modified"])


def set_visibility(placement, hidden):
    placement.hidden = bool(hidden)
    placement.modified = now_ms()
    placement.save(update_fields=["hidden", "modified"])


def set_details(obj, details):
    """Replace an open object's details (a JSON object or array)."""
    if not isinstance(details, (dict, list)):
        raise InvalidInput('"details" must be a JSON object or array')
    if DataObject.objects.filter(pk=obj.pk, state=DataObject.OPEN).update(details=details) != 1:
        raise InvalidState(f"{obj.pk} is not in the open state (it is {obj.state}); details are set while it is open")
    obj.details = details


def request_upload(file, index, size=None, md5=None):
    """Record an expected part (pending until its bytes arrive); the caller signs a PUT URL for it."""
    if file.cls != "file":
        raise InvalidInput(f"{file.pk} is not a file")
    if file.state != DataObject.OPEN:
        raise InvalidState(f"{file.pk} is not in the open state (it is {file.state}); only open files take parts")
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= settings.DXWEB_MAX_PARTS:
        raise InvalidInput(f'"index" must be an integer from 1 to {settings.DXWEB_MAX_PARTS}')
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= settings.DXWEB_MAX_PART_SIZE
    ):
        raise InvalidInput(f'"size" must be an integer from 0 to {settings.DXWEB_MAX_PART_SIZE}')
    if md5 is not None and (
        not isinstance(md5, str) or len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5.lower())
    ):
        raise InvalidInput('"md5" must be 32 hexadecimal digits')
    FilePart.objects.update_or_create(
        file=file,
        index=index,
        defaults={"size": size, "md5": (md5 or "").lower(), "state": FilePart.PENDING},
    )


def store_part(file_id, index, expect_size, expect_md5, stream):
    """Write a part's bytes, checking size and md5; the part is complete only if they match."""
    part = FilePart.objects.filter(file_id=file_id, index=index, file__state=DataObject.OPEN).first()
    if part is None:
        raise InvalidState(f"{file_id} does not take part {index} (not requested, or the file is no longer open)")
    limit = expect_size if expect_size is not None else settings.DXWEB_MAX_PART_SIZE
    name = f"parts/{file_id}/{index}-{secrets.token_hex(6)}"
    digest = hashlib.md5()
    written = _SizedReader(stream, limit, digest)
    blob = default_storage.save(name, File(written, name=name))
    try:
        if written.overflow:
            raise PayloadTooLarge(f"Part {index} is larger than the {limit} bytes announced")
        if expect_size is not None and written.count != expect_size:
            raise InvalidInput(f"Part {index} has {written.count} bytes; {expect_size} were announced")
        if expect_md5 and digest.hexdigest() != expect_md5:
            raise InvalidInput(f"Part {index} has md5 {digest.hexdigest()}; {expect_md5} was announced")
    except Exception:
        default_storage.delete(blob)
        raise
    with transaction.atomic():
        updated = FilePart.objects.filter(pk=part.pk, file__state=DataObject.OPEN).update(
            blob=blob,
            size=written.count,
            md5=digest.hexdigest(),
            state=FilePart.COMPLETE,
        )
        if not updated:
            transaction.on_commit(lambda: _delete_blobs([blob]))
            raise InvalidState(f"{file_id} was closed while part {index} was uploading")
        if part.blob and part.blob != blob:
            old = part.blob
            transaction.on_commit(lambda: _delete_blobs([old]))
    return written.count


class _SizedReader:
    """Wrap a request stream: count and hash the bytes and stop past `limit`."""

    def __init__(self, stream, limit, digest):
        self.stream, self.limit, self.digest = stream, limit, digest
        self.count = 0
        self.overflow = False

    def read(self, size=-1):
        if self.overflow:
            return b""
        chunk = self.stream.read(size if size and size > 0 else 1024 * 1024)
        self.count += len(chunk)
        if self.count > self.limit:
            self.overflow = True
            return b""
        self.digest.update(chunk)
        return chunk

    def __iter__(self):
        while chunk := self.read(1024 * 1024):
            yield chunk

    def chunks(self, chunk_size=None):
        return iter(self)


def close_file(file):
    """open -> closing -> closed: check every part arrived, then fix their offsets."""
    updated = DataObject.objects.filter(pk=file.pk, state=DataObject.OPEN).update(state=DataObject.CLOSING)
    if not updated:
        file.refresh_from_db()
        if file.state in (DataObject.CLOSING, DataObject.CLOSED):
            return file
        raise InvalidState(f"{file.pk} cannot be closed from state {file.state}")
    parts = list(FilePart.objects.filter(file=file).order_by("index"))
    pending = [p.index for p in parts if p.state != FilePart.COMPLETE]
    if pending:
        # Nothing half-written is shown as closed: the file stays open for the missing parts.
        DataObject.objects.filter(pk=file.pk).update(state=DataObject.OPEN)
        raise InvalidState(f"{file.pk} cannot be closed: part(s) {', '.join(map(str, pending[:10]))} not uploaded")
    for part in parts[:-1]:
        if part.size < settings.DXWEB_MIN_PART_SIZE:
            DataObject.objects.filter(pk=file.pk).update(state=DataObject.OPEN)
            raise InvalidState(
                f"Part {part.index} has {part.size} bytes; every part but the last needs at least "
                f"{settings.DXWEB_MIN_PART_SIZE}"
            )
    offset = 0
    for part in parts:
        part.offset = offset
        offset += part.size
    FilePart.objects.bulk_update(parts, ["offset"])
    if offset > settings.DXWEB_MAX_FILE_SIZE:
        DataObject.objects.filter(pk=file.pk).update(state=DataObject.OPEN)
        raise InvalidState(f"{file.pk} is larger than the {settings.DXWEB_MAX_FILE_SIZE} bytes allowed")
    DataObject.objects.filter(pk=file.pk).update(state=DataObject.CLOSED, size=offset)
    file.refresh_from_db()
    return file


# Members, tokens and keys for the pages ----------------------------------------------


def change_member_level(container, grantee, level):
    """Set an existing member's level: raising goes through invite, lowering keeps an ADMINISTER member."""
    new_level = Level.parse(level)
    if new_level is None:
        raise InvalidInput('"level" must be one of VIEW, UPLOAD, CONTRIBUTE, ADMINISTER')
    user, org = resolve_grantee(grantee)
    grant = Grant.objects.filter(container=container, user=user, org=org).first()
    if grant is None:
        raise ResourceNotFound(f"{grantee} is not a member of {container.pk}")
    if new_level > grant.level:
        invite(container, grantee, level)
    elif new_level < grant.level:
        decrease_permissions(container, {grantee: level})


def issue_token(user, name):
    """Create an API token named `name` for `user`; return (token row, the raw secret shown once)."""
    return ApiToken.issue(user, clean_name(name.strip(), "name"))


def issue_token_once(user, name, after):
    """Create a token named `name` unless `user` already has one made after token `after`; return (token, raw).

    What a page asks for when it showed the user their tokens named `name` up to `after` (0: none): a
    form sent twice (a double click, a reload, Back) finds the token the first sending made, and gets
    (that token, None) instead of another one. The user's row is locked meanwhile (SQLite: the
    transaction's write lock), so two sendings at once make one token between them.
    """
    name = clean_name(name.strip(), "name")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        newest = ApiToken.objects.filter(user=user, job_id="", name=name).order_by("-pk").first()
        if newest is not None and newest.pk > after:
            return newest, None
        return ApiToken.issue(user, name)


def clean_email(user, email):
    """Return `email` normalised as `user`'s new address ("" for none), or raise InvalidInput."""
    email = _check_text(email, '"email"', 254, field="email").strip()
    if not email:
        return ""
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput("Enter an email address such as name@example.org", field="email") from None
    email = User.objects.normalize_email(email)
    if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        raise InvalidInput("Another account uses this email address", field="email")
    return email


def set_email(user, email):
    """Set (or, with "", remove) the user's email address, where job notices are sent."""
    user.email = clean_email(user, email)
    user.save(update_fields=["email"])


def set_notifications(user, notify_in_app, notify_by_email):
    """Whether the user hears, in the app and by email, that a job they launched has ended."""
    user.notify_in_app, user.notify_by_email = bool(notify_in_app), bool(notify_by_email)
    user.save(update_fields=["notify_in_app", "notify_by_email"])


def revoke_token(user, token_id):
    """Delete one of the user's own API tokens."""
    deleted, _ = ApiToken.objects.filter(pk=token_id, user=user, job_id="").delete()
    if not deleted:
        raise ResourceNotFound(f"The token {token_id} could not be found")


def set_user_names(user, first=None, last=None):
    """Set the user's first and/or last name."""
    if first is not None:
        user.first_name = _check_text(first, '"first"', 150)
    if last is not None:
        user.last_name = _check_text(last, '"last"', 150)
    user.save(update_fields=["first_name", "last_name"])


def set_ssh_public_key(user, key):
    """Store the user's SSH public key exactly as given (an empty string removes it)."""
    if not isinstance(key, str):
        raise InvalidInput("The SSH public key must be a string")
    if len(key) > 16384:
        raise InvalidInput(f"The SSH public key is too long ({len(key)} characters; at most 16384)")
    if "\x00" in key:
        raise InvalidInput("The SSH public key must not contain NUL characters")
    if key and (not key.strip() or len(key.split()) < 2):
        raise InvalidInput('The SSH public key must be an OpenSSH public key line ("<type> <base64> [comment]")')
    user.ssh_public_key = key
    user.save(update_fields=["ssh_public_key"])


def new_object_fields(body, default_name):
    """Read the keys every /<class>/new body shares (name, folder, tags...) for new_object()."""
    return {
        "name": get(body, "name", str, default_name),
        "folder": get(body, "folder", str, "/"),
        "parents": get(body, "parents", bool, False),
        "hidden": get(body, "hidden", bool, False),
        "tags": string_list(body, "tags", []),
        "types": string_list(body, "types", []),
        "properties": string_map(body, "properties", default={}),
        "details": get(body, "details", (dict, list), None),
    }
