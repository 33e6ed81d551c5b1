"""runSpec.assetDepends: asset bundles resolved through records, unpacked into the job's root.

On DNAnexus an asset is a record (type AssetBundle) whose details name the bundle, a tarball:
`{"archiveFileId": {"$dnanexus_link": "file-x"}}`. An applet names the record by ID
(`{"id": {"$dnanexus_link": "record-x"}}`) or by `name`, `project`, `folder` and `version` (the record's
`version` property). The runner resolves each entry as the job's launcher when the job starts, copies
the tarball into the job's meta directory and unpacks it into `/` before the code runs, as
bundledDepends are. An asset that cannot be found or read fails the job (AssetResolutionError).
"""

import shlex
import shutil

from django.core.files.storage import default_storage

from projects import permissions
from projects.models import DataObject, Level, Placement


class AssetError(Exception):
    """An assetDepends entry that cannot be resolved; the message says which and why."""


def _link_id(value):
    link = value.get("$dnanexus_link") if isinstance(value, dict) else None
    if isinstance(link, dict):
        link = link.get("id")
    return link if isinstance(link, str) else None


def _visible(user, placements):
    """The first placement the user may VIEW (the permission module decides)."""
    for placement in placements:
        level = permissions.user_level(user, placement.container_id)
        if level is not None and permissions.reaches(level, Level.VIEW):
            return placement
    return None


def _record_of(user, entry):
    if not isinstance(entry, dict):
        raise AssetError(f"An assetDepends entry must be a JSON object, not {entry!r}")
    record_id = _link_id(entry.get("id"))
    placements = Placement.objects.select_related("obj").filter(obj__cls="record")
    if record_id is not None:
        placements, what = placements.filter(obj_id=record_id), record_id
    elif isinstance(entry.get("name"), str) and isinstance(entry.get("project"), str):
        folder = entry.get("folder") or "/"
        placements = placements.filter(container_id=entry["project"], folder=folder, name=entry["name"])
        what = f'"{entry["name"]}" in {entry["project"]}:{folder}'
        if isinstance(entry.get("version"), str):
            placements = placements.filter(properties__version=entry["version"])
            what += f" (version {entry['version']})"
    else:
        raise AssetError(f'An assetDepends entry must name a record by "id" or by "name" and "project": {entry!r}')
    placement = _visible(user, placements.order_by("-obj__created"))
    if placement is None:
        raise AssetError(f"The asset record {what} could not be found")
    return placement


def _bundle_of(user, placement):
    file_id = _link_id(placement.obj.details.get("archiveFileId")) if isinstance(placement.obj.details, dict) else None
    if file_id is None:
        raise AssetError(f'The asset record {placement.obj_id} has no "archiveFileId" link in its details')
    bundle = _visible(user, Placement.objects.select_related("obj").filter(obj_id=file_id, obj__cls="file"))
    if bundle is None:
        raise AssetError(f"The asset bundle {file_id} named by {placement.obj_id} could not be found")
    if bundle.obj.state != DataObject.CLOSED:
        raise AssetError(f"The asset bundle {file_id} named by {placement.obj_id} is not closed")
    return bundle.obj


def _copy(file, target):
    with open(target, "wb") as out:
        for part in file.parts.order_by("index"):
            if part.size:
                with default_storage.open(part.blob, "rb") as blob:
                    shutil.copyfileobj(blob, out)


def stage(job, meta_dir, meta_mount):
    """Copy each asset's tarball into `meta_dir`; return the shell lines that unpack them into `/`.

    Raises AssetError when an asset cannot be resolved.
    """
    entries = (job.spec.get("runSpec") or {}).get("assetDepends") or []
    if not isinstance(entries, list):
        raise AssetError("runSpec.assetDepends must be an array")
    # `dx build` also adds each asset's tarball to bundledDepends: that one is unpacked there already.
    depends = (job.spec.get("runSpec") or {}).get("bundledDepends") or []
    bundled = {_link_id(dep.get("id")) for dep in depends if isinstance(dep, dict)}
    lines = []
    for index, entry in enumerate(entries):
        bundle = _bundle_of(job.launched_by, _record_of(job.launched_by, entry))
        if bundle.pk in bundled:
            continue
        name = f"asset-{index}.tar.gz"
        _copy(bundle, meta_dir / name)
        path = shlex.quote(f"{meta_mount}/{name}")
        lines.append(f"tar -xzf {path} -C / && rm -f {path}")
    return lines
