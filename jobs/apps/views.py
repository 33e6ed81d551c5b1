"""Pages for apps: the catalog, an app version's page (its spec, versions, change log, developers and
authorized users), its launch form, and the developers' changes (publish, developers, authorized users).

Apps are reached only through jobs.apps.actions (resolve_app: a hidden app is the same not-found as a
missing one) and changed only through its actions, the same as the API's; projects to launch in come
from projects.permissions.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dxweb.errors import DXError, PermissionDenied, ResourceNotFound
from projects import permissions
from projects.models import Level
from projects.views import principal

from ..permissions import access_job
from ..views import launched
from . import actions
from .forms import AppLaunchForm, PrincipalsForm, PublishForm


def launchable_projects(request):
    """The projects the user may launch jobs in, by name."""
    return permissions.visible_projects(principal(request), Level.CONTRIBUTE).order_by("name", "pk")


def principal_rows(ids):
    """Each user, org or PUBLIC of a list of IDs, as the pages show them."""
    rows = []
    for ref in ids or []:
        kind, _, handle = ref.partition("-")
        rows.append(
            {
                "id": ref,
                "public": ref == "PUBLIC",
                "org": kind == "org",
                "label": handle if kind in ("user", "org") else ref,
            }
        )
    return rows


def change_log(details):
    """The change log the app's details hold (`whatsNew`), as text: a string, or lines of a mapping."""
    news = (details or {}).get("whatsNew") if isinstance(details, dict) else None
    if isinstance(news, dict):
        return "\n".join(f"{version}: {text}" for version, text in news.items())
    if isinstance(news, list):
        return "\n".join(str(line) for line in news)
    return news if isinstance(news, str) else ""


# The catalog ---------------------------------------------------------------------------------------


@login_required
def catalog(request):
    rows = actions.catalog(principal(request))
    for row in rows:
        row["developer_rows"] = principal_rows(row["developers"])
        row["authorized_rows"] = principal_rows(row["authorizedUsers"])
    return render(request, "jobs/apps/catalog.html", {"section": "apps", "apps": rows})


# An app version's page and its developers' forms ---------------------------------------------------


def render_app(request, version, forms=None, status=200):
    who = principal(request)
    app = actions.describe_app(version, who)
    is_developer = bool(app.get("isDeveloperFor"))
    forms = forms or {}
    forms.setdefault("publish", PublishForm())
    forms["publish"].fields["make_default"].help_text = f"The version app-{app['name']} runs"
    forms.setdefault("developers", PrincipalsForm())
    forms.setdefault("users", PrincipalsForm(public=True))
    return render(
        request,
        "jobs/apps/app.html",
        {
            "section": "apps",
            "app": app,
            "is_developer": is_developer,
            "is_default": "default" in (app.get("aliases") or []),
            "versions": actions.version_rows(who, app["name"]),
            "change_log": change_log(app.get("details")),
            "developers": principal_rows(app["developers"]),
            "authorized": principal_rows(app.get("authorizedUsers")),
            "forms": forms,
        },
        status=status,
    )


@login_required
def app_page(request, name, version=None):
    return render_app(request, actions.resolve_app(principal(request), name, alias=version))


def _developer_change(request, name, version, key, make_form, change):
    """A developer's form posted: the change through jobs.apps.actions, or the page again with the
    form's errors (and nothing changed)."""
    who = principal(request)
    found = actions.resolve_app(who, name, alias=version)
    form = make_form(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                done = change(who, found, form.cleaned_data)
        except (PermissionDenied, ResourceNotFound):
            raise  # a non-developer: the 403 (or 404) page, as for any refusal
        except DXError as err:
            form.add_error(None, err.message)
        else:
            messages.success(request, done)
            return redirect("app-version", name, version)
    return render_app(request, found, {key: form}, status=422)


def _publish(who, found, data):
    actions.publish(who, found, make_default=data["make_default"])
    return f"Published {found.app.name} {found.version}"


def _principals(add, remove, what):
    def change(who, found, data):
        if data["action"] == "add":
            add(who, found, data["ids"])
            return f"Added {', '.join(data['ids'])} to the {what} of {found.app.name}"
        remove(who, found, data["ids"])
        return f"Removed {', '.join(data['ids'])} from the {what} of {found.app.name}"

    return change


@login_required
@require_POST
def app_publish(request, name, version):
    return _developer_change(request, name, version, "publish", PublishForm, _publish)


@login_required
@require_POST
def app_developers(request, name, version):
    change = _principals(actions.add_developers, actions.remove_developers, "developers")
    return _developer_change(request, name, version, "developers", PrincipalsForm, change)


@login_required
@require_POST
def app_users(request, name, version):
    change = _principals(actions.add_authorized_users, actions.remove_authorized_users, "authorized users")
    return _developer_change(request, name, version, "users", lambda data: PrincipalsForm(data, public=True), change)


# Launching -----------------------------------------------------------------------------------------


@login_required
def app_launch(request, name, version):
    """The run form of one app version: its inputs, the project to run in, the run's options; ?from=<job>
    starts from that job's launch (clone with edits)."""
    who = principal(request)
    found = actions.resolve_app(who, name, alias=version)
    app = actions.describe_app(found, who)
    projects = list(launchable_projects(request))
    client_ip = request.META.get("REMOTE_ADDR", "")
    form = AppLaunchForm(
        app.get("inputSpec"),
        projects,
        request.POST or None,
        client_ip=client_ip,
        principal=who,
        project=request.GET.get("project") if request.method != "POST" else None,
    )
    source = access_job(who, request.GET["from"]) if request.GET.get("from") else None
    done = launched(
        request,
        form,
        lambda form: actions.run_app(who, found, form.body(form.cleaned_data["project"], app["id"])),
        source,
    )
    if done is not None:
        return done
    return render(
        request,
        "jobs/apps/launch.html",
        {
            "section": "apps",
            "app": app,
            "form": form,
            "source": source,
            "can_run": bool(projects),
            "client_ip": client_ip,
        },
        status=422 if form.errors else 200,
    )
