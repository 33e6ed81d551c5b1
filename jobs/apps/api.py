"""The app API: /app/new, /app-xxxx/<method>, /app-NAME[/ALIAS]/<method> and /system/findApps.

Every app route reaches its version through jobs.apps.actions.resolve_app: a version the caller may
not see answers the same ResourceNotFound as one that does not exist. Changes go through the actions,
which ask jobs.permissions whether the caller is a developer.
"""

import fnmatch

from dxweb import api
from dxweb.api import api_method
from dxweb.errors import InvalidInput
from dxweb.validation import get, string_list
from projects.find import describe_input, page_limit
from projects.models import select_fields
from projects.permissions import access_user

from ..permissions import visible_app_versions
from . import actions


def app_method(name, write=False):
    """Register /app-<id|NAME[/ALIAS]>/<name>: the handler gets the version the caller may see."""

    def register(fn):
        def handler(principal, ref, body):
            return fn(principal, actions.resolve_app(principal, ref), body)

        api_method("app", name, write=write)(handler)
        return fn

    return register


@api_method("app", "new", write=True)
def app_new(principal, body):
    return {"id": actions.new_app(principal, body).id}


@app_method("describe")
def app_describe(principal, version, body):
    return select_fields(actions.describe_app(version, principal), body)


@app_method("get")
def app_get(principal, version, body):
    data = actions.describe_app(version, principal)
    return {key: data[key] for key in ("inputSpec", "outputSpec", "runSpec", "dxapi", "access", "title", "summary")}


@app_method("update", write=True)
def app_update(principal, version, body):
    return {"id": actions.update_version(principal, version, body).id}


@app_method("publish", write=True)
def app_publish(principal, version, body):
    make_default = get(body, "makeDefault", bool, False)
    return {"id": actions.publish(principal, version, make_default=make_default).id}


@app_method("delete", write=True)
def app_delete(principal, version, body):
    return {"id": actions.delete(principal, version).id}


@app_method("addTags", write=True)
def app_add_tags(principal, version, body):
    return {"id": actions.add_tags(principal, version, string_list(body, "tags")).id}


@app_method("removeTags", write=True)
def app_remove_tags(principal, version, body):
    return {"id": actions.remove_tags(principal, version, string_list(body, "tags")).id}


@app_method("listCategories")
def app_list_categories(principal, version, body):
    return {"categories": list(version.app.categories)}


@app_method("addCategories", write=True)
def app_add_categories(principal, version, body):
    actions.change_categories(principal, version, add=string_list(body, "categories"))
    return {"id": version.id}


@app_method("removeCategories", write=True)
def app_remove_categories(principal, version, body):
    actions.change_categories(principal, version, remove=string_list(body, "categories"))
    return {"id": version.id}


@app_method("listDevelopers")
def app_list_developers(principal, version, body):
    return {"developers": actions.developer_ids(version)}


@app_method("addDevelopers", write=True)
def app_add_developers(principal, version, body):
    actions.add_developers(principal, version, get(body, "developers", list))
    return {"id": version.id}


@app_method("removeDevelopers", write=True)
def app_remove_developers(principal, version, body):
    actions.remove_developers(principal, version, get(body, "developers", list))
    return {"id": version.id}


@app_method("listAuthorizedUsers")
def app_list_authorized_users(principal, version, body):
    return {"authorizedUsers": actions.authorized_ids(version)}


@app_method("addAuthorizedUsers", write=True)
def app_add_authorized_users(principal, version, body):
    actions.add_authorized_users(principal, version, get(body, "authorizedUsers", list))
    return {"id": version.id}


@app_method("removeAuthorizedUsers", write=True)
def app_remove_authorized_users(principal, version, body):
    actions.remove_authorized_users(principal, version, get(body, "authorizedUsers", list))
    return {"id": version.id}


@app_method("install", write=True)
def app_install(principal, version, body):
    return {"id": actions.install(principal, version).id}


@app_method("uninstall", write=True)
def app_uninstall(principal, version, body):
    return {"id": actions.uninstall(principal, version).id}


@app_method("run")
def app_run(principal, version, body):
    return {"id": actions.run_app(principal, version, body).id}


# The user describe also lists the apps the user installed (`dx uninstall` reads it).
_user_describe = api.HANDLERS[("user", "describe")]


@api_method("user", "describe")
def user_describe(principal, user_id, body):
    data = _user_describe(principal, user_id, body)
    if access_user(principal, user_id) == principal.user:
        data["appsInstalled"] = actions.apps_installed(principal.user)
    return data


# findApps --------------------------------------------------------------------------------------------


def _name_filter(query):
    if isinstance(query, str):
        return lambda name: name == query
    if isinstance(query, dict) and isinstance(query.get("glob"), str):
        return lambda name: fnmatch.fnmatchcase(name, query["glob"])
    raise InvalidInput('"name" must be a string or {"glob": pattern}', field="name")


def _between(value, bounds, key):
    if bounds is None:
        return True
    if not isinstance(bounds, dict) or not all(
        isinstance(bounds.get(end, 0), int) and not isinstance(bounds.get(end, 0), bool) for end in ("after", "before")
    ):
        raise InvalidInput(f'"{key}" must be {{"after": ms, "before": ms}}', field=key)
    return bounds.get("after", value) <= value <= bounds.get("before", value)


def _matches(principal, version, body):
    if "name" in body and not _name_filter(body["name"])(version.app.name):
        return False
    published = body.get("published")
    if published is not None and (version.published is not None) != bool(published):
        return False
    if body.get("category") is not None and body["category"] not in version.app.categories:
        return False
    if body.get("installed") is not None:
        installed = version.app.installs.filter(user=principal.user).exists()
        if installed != bool(body["installed"]):
            return False
    return _between(version.created, body.get("created"), "created") and _between(
        version.modified, body.get("modified"), "modified"
    )


def _principal_handle(body, key, prefix):
    value = body[key]
    if not isinstance(value, str):
        raise InvalidInput(f'"{key}" must be an ID', field=key)
    return value[len(prefix) :] if value.startswith(prefix) else None


def _narrowed(versions, body):
    """The filters the database applies: name (exact), billTo, createdBy, developer."""
    if isinstance(body.get("name"), str):
        versions = versions.filter(app__name=body["name"])
    if body.get("billTo") is not None:
        versions = versions.filter(bill_to=get(body, "billTo", str))
    if body.get("createdBy") is not None:
        versions = versions.filter(created_by__username=_principal_handle(body, "createdBy", "user-"))
    if body.get("developer") is not None:
        handle = _principal_handle(body, "developer", "user-")
        if handle is not None:
            versions = versions.filter(app__developers__user__username=handle)
        else:
            versions = versions.filter(app__developers__org_id=body["developer"])
    return versions


def _latest_only(versions):
    """One version per app name: its default when it is among them, else the newest."""
    chosen = {}
    for version in versions:  # newest first within each name
        current = chosen.get(version.app_id)
        if current is None or (actions.DEFAULT in version.tags and actions.DEFAULT not in current.tags):
            chosen[version.app_id] = version
    return [v for v in versions if chosen.get(v.app_id) is v]


@api_method("system", "findApps")
def find_apps(principal, body):
    wanted, options = describe_input(body)
    limit = page_limit(body)
    versions = visible_app_versions(principal).filter(deleted=False).select_related("app", "created_by")
    versions = _narrowed(versions, body)
    rows = [v for v in versions.order_by("app__name", "-created", "-pk") if _matches(principal, v, body)]
    if not get(body, "allVersions", bool, False):
        rows = _latest_only(rows)
    starting = body.get("starting")
    if starting is not None:
        ids = [v.pk for v in rows]
        if not isinstance(starting, str) or starting not in ids:
            raise InvalidInput('"starting" must be the "next" value of a previous reply', field="starting")
        rows = rows[ids.index(starting) :]
    results = []
    for version in rows[:limit]:
        row = {"id": version.pk}
        if wanted:
            data = actions.describe_app(version, principal)
            row["describe"] = select_fields(data, options) if "fields" in options else data
        results.append(row)
    return {"results": results, "next": rows[limit].pk if len(rows) > limit else None}
