"""Who may reach a job, and who may debug it: the jobs' rules, on top of projects.permissions.

A job is reached through its project: VIEW to see it, CONTRIBUTE to change it. A job the principal
cannot see and a job that does not exist give the same ResourceNotFound.

The debug policy, in one place. Three things can be done to a job someone can see, by different people:
- Allow SSH from an address (allowSSH): CONTRIBUTE on the project, as any other change of the job
  through /job-x/update. The list is a firewall: it opens no shell by itself.
- Open a shell (`dx ssh`, the browser terminal): the launcher; a project administrator too only
  when DXWEB_DEBUG_BY_ADMINS is set. A shell runs as the job, with its token, its inputs and the
  launcher's files; so by default only the launcher gets one, and a site that trusts its project
  administrators with that much says so. The job must be running or held, and the caller's address
  in its allowSSH.
- Extend or release a debug hold: the launcher or a project administrator, always. Neither shows
  anything of the job: extending keeps its sandbox a while longer, releasing ends the job as it would
  have ended, and an administrator may terminate the job anyway.
Job tokens never open a shell or change a hold: a job does not debug itself or another job.
"""

from functools import cache

from django.conf import settings
from django.db import connection
from django.db.models import Q

from dxweb import sql
from dxweb.errors import InvalidState, PermissionDenied, ResourceNotFound
from projects.models import Level, OrgMember
from projects.permissions import level_of, reaches, require_level

from .models import Analysis, AppAuthorization, AppDeveloper, AppVersion, Job, State
from .scheduler import job_with_relations, job_with_relations_sql
from .ssh.gateway import address_allowed


class AddressNotAllowed(PermissionDenied):
    """The caller may debug the job, but not from this address (allowSSH)."""


def _access_execution(model, principal, execution_id, needed):
    """The job or analysis, with `level` (the principal's on its project), if the principal holds `needed`
    there; one that is hidden and one that does not exist give the same ResourceNotFound."""
    found = None
    if isinstance(execution_id, str):
        if model is Job:
            found = load_job(execution_id)
        else:
            found = model.objects.select_related("project", "launched_by").filter(pk=execution_id).first()
    level = level_of(principal, found.project_id) if found is not None else Level.NONE
    if not reaches(level, Level.VIEW):
        raise ResourceNotFound(f"The entity {execution_id} could not be found")
    found.level = require_level(level, found.project_id, needed)
    return found


@cache
def _job_statement(vendor):
    """load_job's read, written once per vendor: the ORM spent ~2 ms of Python building this join of
    three tables for every job call (`dx watch` and dxpy describe a job again and again), the database
    a fraction of that answering it (dxweb/sql.py). With it, its root's analysis (a subjob's
    rootExecution, which dxpy.run() describes in every subjob)."""
    job_id, root, analysis = (sql.name(Job, f) for f in ("id", "root", "analysis"))
    root_analysis = f", (SELECT r.{analysis} FROM {sql.name(Job)} r WHERE r.{job_id} = j.{root})"
    return f"{job_with_relations_sql(also=root_analysis)} WHERE j.{job_id} = %s"


def load_job(job_id):
    """The job with its project and launcher, as select_related gives it, and `root_analysis_id` (see
    jobs.models.root_execution), or None."""
    rows = sql.fetch(_job_statement(connection.vendor), [job_id])
    if not rows:
        return None
    job = job_with_relations(rows[0])
    job.root_analysis_id = rows[0][-1]
    return job


def access_job(principal, job_id, needed=Level.VIEW):
    """Return the job, with `level` (the principal's on its project), if the principal holds `needed` there."""
    return _access_execution(Job, principal, job_id, needed)


def check_jobs_visible(principal, job_ids, chunk=500):
    """Raise ResourceNotFound for the first of `job_ids` the principal cannot see or that does not
    exist, as access_job would for each: one read per `chunk` of them (SQLite's limit on a statement's
    parameters) and one level per project, as a gather may name thousands of jobs of one project."""
    job_ids = list(job_ids)
    projects = {}
    for ids in sql.chunks(job_ids, chunk):
        projects.update(Job.objects.filter(pk__in=ids).values_list("pk", "project_id"))
    levels = {}
    for job_id in job_ids:
        project_id = projects.get(job_id)
        if project_id is not None and project_id not in levels:
            levels[project_id] = level_of(principal, project_id)
        if project_id is None or not reaches(levels[project_id], Level.VIEW):
            raise ResourceNotFound(f"The entity {job_id} could not be found")


def check_job_visible(principal, job):
    """Raise ResourceNotFound unless the principal (still) holds VIEW on the job's project."""
    if not reaches(level_of(principal, job.project_id), Level.VIEW):
        raise ResourceNotFound(f"The entity {job.id} could not be found")


def _launched(principal, job):
    """Whether the principal is the job's launcher acting as themselves (no job token)."""
    return principal.scopes is None and job.launched_by_id == principal.user.pk


def may_open_shell(principal, job):
    """Whether the principal may open a shell in the job, its state and address aside."""
    return _launched(principal, job) or (
        principal.scopes is None
        and settings.DXWEB_DEBUG_BY_ADMINS
        and reaches(level_of(principal, job.project_id), Level.ADMINISTER)
    )


def may_change_hold(principal, job):
    """Whether the principal may extend or release the job's debug hold, its state aside."""
    return _launched(principal, job) or (
        principal.scopes is None and reaches(level_of(principal, job.project_id), Level.ADMINISTER)
    )


def access_debug(principal, job_id):
    """Return the job if the principal may open a shell in it now; raise with the reason otherwise."""
    job = access_job(principal, job_id)
    if not may_open_shell(principal, job):
        who = "its launcher or a project administrator" if settings.DXWEB_DEBUG_BY_ADMINS else "its launcher"
        raise PermissionDenied(f"Only {who} may open a terminal in {job.id}")
    if job.state not in (State.RUNNING, State.DEBUG_HOLD):
        raise InvalidState(f"{job.id} is {job.state}: only running or held jobs can be reached by SSH")
    if not address_allowed(principal.client_ip, job.allow_ssh):
        raise AddressNotAllowed(
            f"Your address {principal.client_ip or '(unknown)'} is not in the allowSSH list of {job.id}; "
            "allow it from the job page (or with `dx ssh`) first"
        )
    return job


def access_hold(principal, job_id):
    """Return the job if the principal may extend or release its debug hold, whatever its state."""
    job = access_job(principal, job_id)
    if not may_change_hold(principal, job):
        raise PermissionDenied(f"Only the launcher or a project administrator may change the hold of {job.id}")
    return job


def access_analysis(principal, analysis_id, needed=Level.VIEW):
    """Return the analysis, as access_job returns a job: through its project, missing and hidden alike."""
    return _access_execution(Analysis, principal, analysis_id, needed)


# Apps -------------------------------------------------------------------------------------------------
# An app version is seen (found, described, run) by its app's developers (users, or members of a
# developer org), and once published by its authorized users: named directly, members of an authorized
# org, or anyone signed in when PUBLIC is among them. Only developers change an app. A version the
# principal may not see and one that does not exist give the same ResourceNotFound. A job's token
# acts as the job's launcher here: a job may describe and run what its launcher may.


def _user_orgs(user):
    return OrgMember.objects.filter(user=user).values("org_id")


def _signed_in(principal):
    user = getattr(principal, "user", None)
    return user is not None and user.is_authenticated and user.is_active


def is_app_developer(principal, app):
    """Whether the principal is a developer of the app name (`app`: an App)."""
    if not _signed_in(principal):
        return False
    user = principal.user
    return AppDeveloper.objects.filter(app=app).filter(Q(user=user) | Q(org__in=_user_orgs(user))).exists()


def is_app_authorized(principal, app):
    """Whether the principal is an authorized user of the app name (directly, by org or PUBLIC)."""
    if not _signed_in(principal):
        return False
    user = principal.user
    return (
        AppAuthorization.objects.filter(app=app)
        .filter(Q(public=True) | Q(user=user) | Q(org__in=_user_orgs(user)))
        .exists()
    )


def may_see_app(principal, version):
    """Whether the principal may see (and run) this app version."""
    if version.deleted and not is_app_developer(principal, version.app):
        return False
    if is_app_developer(principal, version.app):
        return True
    return version.published is not None and is_app_authorized(principal, version.app)


def visible_app_versions(principal):
    """The app versions the principal may see, as a queryset (findApps, the catalog)."""
    if not _signed_in(principal):
        return AppVersion.objects.none()
    user = principal.user
    orgs = _user_orgs(user)
    developer = Q(app__developers__user=user) | Q(app__developers__org__in=orgs)
    authorized = Q(app__authorizations__public=True) | Q(app__authorizations__user=user)
    authorized |= Q(app__authorizations__org__in=orgs)
    ids = AppVersion.objects.filter(developer | (authorized & Q(published__isnull=False, deleted=False)))
    return AppVersion.objects.filter(pk__in=ids.values("pk"))


def check_app_visible(principal, version, ref=None):
    """Return the version if the principal may see it, else the not-found of a missing app."""
    if version is None or not may_see_app(principal, version):
        raise ResourceNotFound(f"The entity {ref or getattr(version, 'id', '')} could not be found")
    return version


def check_app_developer(principal, version):
    """Raise PermissionDenied unless the principal (seeing the version) is a developer of its app."""
    if not is_app_developer(principal, version.app):
        raise PermissionDenied(f"Only a developer of app-{version.app.name} may change it")
    if principal.scopes is not None:
        raise PermissionDenied("Job tokens cannot change apps")
    return version


def check_app_name_free(principal, app):
    """Raise unless the principal may add versions to the app name `app` (None: a new name)."""
    if app is not None and not is_app_developer(principal, app):
        raise PermissionDenied(f"The app name {app.name} belongs to other developers")
    if principal.scopes is not None:
        raise PermissionDenied("Job tokens cannot create apps")
