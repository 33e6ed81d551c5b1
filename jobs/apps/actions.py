"""Apps: creating versions from applets, publishing, developers, authorized users, tags, installs, runs.

Every change goes through here (the API and the pages alike); who may see or change an app is
decided in jobs.permissions.
"""

import re

from django.db import transaction

from dxweb.errors import InvalidInput, InvalidState, ResourceNotFound
from dxweb.ids import ID_RE, new_id
from dxweb.validation import get, string_list
from projects import actions as project_actions
from projects.models import Container, Level, Placement, now_ms
from projects.permissions import access_container, access_object

from .. import actions as job_actions
from ..models import (
    APP_NAME_RE,
    APP_VERSION_RE,
    PUBLIC,
    App,
    AppAuthorization,
    AppDeveloper,
    AppInstall,
    AppVersion,
)
from ..permissions import (
    check_app_developer,
    check_app_name_free,
    check_app_visible,
    is_app_developer,
    visible_app_versions,
)

CONFLICT = "Specified name and version conflict with an existing alias"
DEFAULT = "default"
# The applet's specs frozen into the version (the code is in runSpec).
SPEC_KEYS = ("inputSpec", "outputSpec", "runSpec", "access", "dxapi", "ignoreReuse", "treeTurnaroundTimeThreshold")
TEXT_KEYS = {"title": "title", "summary": "summary", "description": "description", "developerNotes": "developer_notes"}


def _clean_name(name):
    if not isinstance(name, str) or not re.match(APP_NAME_RE, name) or ID_RE.match(f"app-{name}"):
        raise InvalidInput(
            'An app "name" must be 1 to 128 letters, digits, ".", "_" or "-" (and not look like an app ID)',
            field="name",
        )
    return name


def _clean_version(version):
    if not isinstance(version, str) or len(version) > 128 or not re.match(APP_VERSION_RE, version):
        raise InvalidInput(
            f'"version" must be a semantic version such as 1.0.0 or 1.2.0-beta+build.7, not {version!r}',
            field="version",
        )
    return version


# Resolving -------------------------------------------------------------------------------------------


def _split(ref, alias):
    """(version id or None, name or None, alias or None) for an app reference."""
    ref = ref or ""
    if ref.startswith("app-"):
        ref = ref[4:]
    if "/" in ref:
        ref, _, alias = ref.partition("/")
    if alias is None and ID_RE.match(f"app-{ref}") and AppVersion.objects.filter(pk=f"app-{ref}").exists():
        return f"app-{ref}", None, None
    return None, ref, alias


def _find(name, alias, principal):
    versions = AppVersion.objects.select_related("app").filter(app__name=name)
    if alias:
        found = versions.filter(version=alias).first()
        if found is None:
            found = next((v for v in versions.filter(deleted=False) if alias in v.tags), None)
        return found
    found = next((v for v in versions.filter(deleted=False) if DEFAULT in v.tags), None)
    if found is None:  # no default yet: the newest version the principal may see
        visible = visible_app_versions(principal).filter(app__name=name, deleted=False)
        found = visible.select_related("app").order_by("-created", "-pk").first()
    return found


def resolve_app(principal, ref, alias=None):
    """The app version named by `ref` (app-xxxx, NAME, app-NAME, NAME/VERSION, NAME/default), optionally
    with `alias`, if the principal may see it; else ResourceNotFound, as for an app that does not exist."""
    if not isinstance(ref, str) or not ref:
        raise ResourceNotFound("An app ID or name is required")
    version_id, name, alias = _split(ref, alias)
    if version_id:
        found = AppVersion.objects.select_related("app").filter(pk=version_id).first()
    else:
        found = _find(name, alias, principal)
    shown = ref if alias is None or "/" in ref else f"{ref}/{alias}"
    return check_app_visible(principal, found, ref=shown if shown.startswith("app-") else f"app-{shown}")


# Describing ------------------------------------------------------------------------------------------


def developer_ids(version):
    rows = AppDeveloper.objects.filter(app_id=version.app_id).select_related("user")
    return sorted(row.principal_id for row in rows)


def authorized_ids(version):
    rows = AppAuthorization.objects.filter(app_id=version.app_id).select_related("user")
    return sorted(row.principal_id for row in rows)


def _run_spec(spec, show_code):
    """The runSpec as describe shows it: the code only to developers, unless the app is open source."""
    run_spec = dict(spec.get("runSpec") or {})
    run_spec.pop("file", None)
    if not show_code:
        run_spec.pop("code", None)
    run_spec.setdefault("interpreter", "bash")
    return run_spec


def describe_app(version, principal):
    """The fields /app-x/describe returns (`dx describe`, `dx run`, `dx build --app` read them)."""
    app, spec = version.app, version.spec
    user = getattr(principal, "user", None)
    developer = is_app_developer(principal, app)
    data = {
        "id": version.id,
        "class": "app",
        "name": app.name,
        "version": version.version,
        "aliases": version.aliases,
        "createdBy": version.created_by.dx_id if version.created_by_id else "",
        "created": version.created,
        "modified": version.modified,
        "applet": version.source_applet,
        "installed": bool(user and AppInstall.objects.filter(app=app, user_id=user.pk).exists()),
        "installs": AppInstall.objects.filter(app=app).count(),
        "openSource": version.open_source,
        "deleted": version.deleted,
        "isDeveloperFor": developer,
        "authorizedUsers": authorized_ids(version),
        "developers": developer_ids(version),
        "billTo": version.bill_to,
        "title": version.title,
        "summary": version.summary,
        "description": version.description,
        "developerNotes": version.developer_notes,
        "resources": version.resources_id,
        "regionalOptions": {version.region: {"applet": version.source_applet, "resources": version.resources_id}},
    }
    if not version.deleted:
        data.update(
            details=version.details,
            categories=list(app.categories),
            access=spec.get("access", {}),
            dxapi=spec.get("dxapi", "1.0.0"),
            inputSpec=spec.get("inputSpec", []),
            outputSpec=spec.get("outputSpec", []),
            runSpec=_run_spec(spec, developer or version.open_source),
        )
    if version.published is not None:
        data["published"] = version.published
    return data


# Creating and updating -------------------------------------------------------------------------------


def _source(principal, body):
    """The applet (a placement the principal can see) and the extra resources container of /app/new."""
    regional = get(body, "regionalOptions", dict, {})
    applet_id, resources_id, region = body.get("applet"), body.get("resources"), None
    for region, options in regional.items():  # noqa: B007 (`dx build --app` sends the one region it built in)
        if not isinstance(options, dict):
            raise InvalidInput('"regionalOptions" must map each region to {"applet": ...}', field="regionalOptions")
        applet_id, resources_id = options.get("applet", applet_id), options.get("resources", resources_id)
        break
    if not isinstance(applet_id, str):
        raise InvalidInput('An app is built from an applet: "regionalOptions": {REGION: {"applet": "applet-..."}}')
    placement = access_object(principal, applet_id, Level.VIEW, cls="applet")
    extra = access_container(principal, resources_id) if resources_id else None
    # The region is the one its applet was built in (regionalOptions must name that one).
    if region is not None and region != placement.container.region:
        raise InvalidInput(
            f'"regionalOptions" names the region {region}, but {applet_id} is in {placement.container.region}',
            field="regionalOptions",
        )
    return placement, extra, placement.container.region


def _freeze(principal, version, placement, extra):
    """Keep the applet, its bundled resources and any extra resources in the version's own container."""
    if version.resources_id is None:
        version.resources = project_actions.create_container(
            None, f"resources of {version.id}", kind=Container.WORKSPACE
        )
    container = version.resources
    container.placements.all().delete()
    applet = placement.obj
    Placement.objects.create(container=container, obj=applet, folder="/", name=placement.name)
    for dep in applet.spec.get("runSpec", {}).get("bundledDepends", []):
        link = dep["id"]["$dnanexus_link"]
        file_id = link if isinstance(link, str) else link.get("id")
        source = access_object(principal, file_id, Level.VIEW, project=placement.container_id)
        if not Placement.objects.filter(container=container, obj_id=file_id).exists():
            Placement.objects.create(container=container, obj=source.obj, folder="/", name=source.name)
    if extra is not None:
        for item in extra.placements.select_related("obj").exclude(obj_id=applet.pk):
            if not Placement.objects.filter(container=container, obj_id=item.obj_id).exists():
                Placement.objects.create(container=container, obj=item.obj, folder="/", name=item.name)
    version.applet = applet
    version.source_applet = applet.pk
    version.spec = {key: applet.spec[key] for key in SPEC_KEYS if key in applet.spec}


def _apply_fields(version, body):
    for key, field in TEXT_KEYS.items():
        if key in body:
            setattr(version, field, get(body, key, str) or "")
    if "details" in body:
        version.details = get(body, "details", (dict, list), {})
    if "billTo" in body:
        version.bill_to = get(body, "billTo", str, "") or ""
    if "openSource" in body:
        version.open_source = get(body, "openSource", bool, False)


@transaction.atomic
def new_app(principal, body):
    """/app/new: a new (unpublished) version of an app name, claiming the name if it is new."""
    name, version_string = _clean_name(body.get("name")), _clean_version(body.get("version"))
    app = App.objects.select_for_update().filter(name=name).first()
    check_app_name_free(principal, app)
    if app is not None and AppVersion.objects.filter(app=app, version=version_string).exists():
        raise InvalidInput(CONFLICT)
    placement, extra, region = _source(principal, body)
    categories = string_list(body, "categories", [])
    if app is None:
        app = App.objects.create(name=name, created_by=principal.user, categories=sorted(set(categories)))
        AppDeveloper.objects.create(app=app, user=principal.user)
    version = AppVersion(id=new_id("app"), app=app, version=version_string, created_by=principal.user, region=region)
    version.bill_to = principal.user.dx_id  # unless the body names another
    _apply_fields(version, body)
    _freeze(principal, version, placement, extra)
    version.save()
    return version


@transaction.atomic
def update_version(principal, version, body):
    """/app-x/update: change an unpublished version (its applet, texts, details)."""
    check_app_developer(principal, version)
    if version.published is not None:
        raise InvalidState(f"{version.id} is published; a published version cannot be changed")
    if "regionalOptions" in body or "applet" in body:
        placement, extra, region = _source(principal, body)
        _freeze(principal, version, placement, extra)
        version.region = region
    _apply_fields(version, body)
    version.modified = now_ms()
    version.save()
    return version


# Publishing, tags, deleting ----------------------------------------------------------------------------


def _move_tags(version, tags):
    """Give the version these aliases, taking each from the app's other versions."""
    for other in AppVersion.objects.filter(app_id=version.app_id).exclude(pk=version.pk):
        kept = [t for t in other.tags if t not in tags]
        if kept != other.tags:
            AppVersion.objects.filter(pk=other.pk).update(tags=kept, modified=now_ms())
    version.tags = [*version.tags, *(t for t in tags if t not in version.tags)]


@transaction.atomic
def publish(principal, version, make_default=True):
    """/app-x/publish: the version becomes immutable and visible to the authorized users."""
    check_app_developer(principal, version)
    if version.deleted:
        raise InvalidState(f"{version.id} has been deleted")
    if version.published is not None:
        raise InvalidState(f"{version.id} has already been published")
    version.published = version.modified = now_ms()
    if make_default:
        _move_tags(version, [DEFAULT])
    version.save()
    return version


def _clean_tags(tags):
    tags = project_actions.clean_tags(tags)
    for tag in tags:
        if not tag or re.match(APP_VERSION_RE, tag) or "/" in tag:
            raise InvalidInput(f"{tag!r} cannot be an alias (not empty, no '/', not a version)", field="tags")
    return tags


@transaction.atomic
def add_tags(principal, version, tags):
    check_app_developer(principal, version)
    if version.deleted:
        raise InvalidState(f"{version.id} has been deleted")
    _move_tags(version, _clean_tags(tags))
    version.modified = now_ms()
    version.save()
    return version


@transaction.atomic
def remove_tags(principal, version, tags):
    check_app_developer(principal, version)
    version.tags = [t for t in version.tags if t not in tags]
    version.modified = now_ms()
    version.save()
    return version


@transaction.atomic
def delete(principal, version):
    """/app-x/delete: the version can no longer be run; its aliases are freed."""
    check_app_developer(principal, version)
    version.deleted, version.tags, version.modified = True, [], now_ms()
    version.save()
    return version


def change_categories(principal, version, add=(), remove=()):
    check_app_developer(principal, version)
    app = version.app
    app.categories = sorted((set(app.categories) | set(add)) - set(remove))
    app.save(update_fields=["categories"])
    return app.categories


# Developers and authorized users ---------------------------------------------------------------------


def _grantees(ids, allow_public=False):
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("Expected an array of user or org IDs")
    out = []
    for ref in ids:
        if ref == PUBLIC and allow_public:
            out.append((None, None, True))
        else:
            user, org = project_actions.resolve_grantee(ref)
            out.append((user, org, False))
    return out


@transaction.atomic
def add_developers(principal, version, ids):
    check_app_developer(principal, version)
    for user, org, _ in _grantees(ids):
        AppDeveloper.objects.get_or_create(app=version.app, user=user, org=org)
    return developer_ids(version)


@transaction.atomic
def remove_developers(principal, version, ids):
    check_app_developer(principal, version)
    for user, org, _ in _grantees(ids):
        AppDeveloper.objects.filter(app=version.app, user=user, org=org).delete()
    if not AppDeveloper.objects.filter(app=version.app).exists():
        raise InvalidInput(f"app-{version.app.name} must keep at least one developer")
    return developer_ids(version)


@transaction.atomic
def add_authorized_users(principal, version, ids):
    check_app_developer(principal, version)
    for user, org, public in _grantees(ids, allow_public=True):
        if public:
            AppAuthorization.objects.get_or_create(app=version.app, public=True, user=None, org=None)
        else:
            AppAuthorization.objects.get_or_create(app=version.app, user=user, org=org, public=False)
    return authorized_ids(version)


@transaction.atomic
def remove_authorized_users(principal, version, ids):
    check_app_developer(principal, version)
    for user, org, public in _grantees(ids, allow_public=True):
        if public:
            AppAuthorization.objects.filter(app=version.app, public=True).delete()
        else:
            AppAuthorization.objects.filter(app=version.app, user=user, org=org, public=False).delete()
    return authorized_ids(version)


# Installing and running ------------------------------------------------------------------------------


def install(principal, version):
    if version.deleted:
        raise InvalidState(f"{version.id} has been deleted")
    AppInstall.objects.update_or_create(app=version.app, user=principal.user, defaults={"version": version})
    return version


def uninstall(principal, version):
    AppInstall.objects.filter(app=version.app, user=principal.user).delete()
    return version


def apps_installed(user):
    """{app name: installed version ID}, the user describe's appsInstalled."""
    rows = AppInstall.objects.filter(user=user).select_related("app")
    return {row.app.name: row.version_id for row in rows}


def run_app(principal, version, body, analysis=None, stage=""):
    """/app-x/run: a job in the caller's project, as an applet's (jobs.actions.run_applet)."""
    if version.deleted:
        raise InvalidState(f"{version.id} has been deleted and cannot be run")
    placement = Placement.objects.select_related("obj").filter(container=version.resources_id, obj=version.applet_id)
    placement = placement.first()
    if placement is None:
        raise InvalidState(f"The code of {version.id} is no longer available")
    return job_actions.run_applet(principal, placement, body, analysis=analysis, stage=stage, app=version)


# Listing -----------------------------------------------------------------------------------------------


def version_rows(principal, name):
    """Every version of the app name the principal may see, newest first, described."""
    versions = visible_app_versions(principal).filter(app__name=name).select_related("app", "created_by")
    return [describe_app(v, principal) for v in versions.order_by("-created", "-pk")]


def catalog(principal):
    """The app names the principal may see, each with its latest visible version, described (by name)."""
    latest = {}
    versions = visible_app_versions(principal).filter(deleted=False).select_related("app", "created_by")
    for version in versions.order_by("app__name", "-created", "-pk"):
        current = latest.get(version.app.name)
        # The default version when visible, else the newest.
        if current is None or (DEFAULT in version.tags and DEFAULT not in current.tags):
            latest[version.app.name] = version
    return [describe_app(v, principal) for _, v in sorted(latest.items())]


catalog_rows = catalog
