"""The one place that decides who may reach what.

Pages, API methods and websocket consumers reach containers, data objects and
orgs only through the `access_*` helpers here. An object the principal cannot
see and an object that does not exist give the same ResourceNotFound.
"""

from dataclasses import dataclass
from functools import cache

from django.db import connection
from django.db.models import Case, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, Greatest

from dxweb import sql
from dxweb.errors import PermissionDenied, ResourceNotFound

from .models import Container, DataObject, Grant, Level, Org, OrgMember, Placement, User

LEVEL_RULES = {
    Level.VIEW: "read data, folders and metadata; download files",
    Level.UPLOAD: "VIEW, plus add new files and folders",
    Level.CONTRIBUTE: "UPLOAD, plus modify, move, rename and delete data, and launch executables",
    Level.ADMINISTER: "CONTRIBUTE, plus manage members and delete the project",
}


@dataclass
class Principal:
    """Who is calling: a user, optionally narrowed to a job token's scopes."""

    user: User
    # None: the user's own grants. A dict (container id -> level): a scoped token.
    scopes: dict | None = None
    token_id: int | None = None
    # Set for a job token: the job acting.
    job_id: str = ""
    client_ip: str = ""
    # The HTTP request, for building absolute transfer URLs.
    request: object = None

    @property
    def key(self):
        return f"{self.user.dx_id}" if self.scopes is None else f"token-{self.token_id}"

    @classmethod
    def of(cls, user):
        return cls(user=user)

    @classmethod
    def of_token(cls, token, **extra):
        """The principal an API token (with its user loaded) acts as: a user's own, or a job's scoped one."""
        scopes = {cid: Level(lvl) for cid, lvl in token.scopes.items()} if token.scopes is not None else None
        return cls(user=token.user, scopes=scopes, token_id=token.pk, job_id=token.job_id, **extra)


def _grant_filter(user):
    return Q(user=user) | Q(org__members__user=user)


def _grantee_sql(user):
    """SQL true for a grant `g` to the user (`user`: a placeholder or a column), directly or through an
    org they belong to."""
    g_user, g_org = sql.name(Grant, "user"), sql.name(Grant, "org")
    m_org, m_user = sql.name(OrgMember, "org"), sql.name(OrgMember, "user")
    member = sql.name(OrgMember)
    return f"(g.{g_user} = {user} OR g.{g_org} IN (SELECT m.{m_org} FROM {member} m WHERE m.{m_user} = {user}))"


def granted_sql(user="%s"):
    """SQL for the containers a user holds a grant on, directly or through an org. Parameters: the
    user's id, twice."""
    return f"SELECT g.{sql.name(Grant, 'container')} FROM {sql.name(Grant)} g WHERE {_grantee_sql(user)}"


def level_sql(container_column, user="%s"):
    """SQL for the highest level a user holds on the container `container_column` names: their direct
    grant or a grant to any org they belong to, NULL when none. Parameters: the user's id, twice, or
    none when `user` names the column that holds it."""
    g_level, g_container = sql.name(Grant, "level"), sql.name(Grant, "container")
    return (
        f"(SELECT MAX(g.{g_level}) FROM {sql.name(Grant)} g WHERE g.{g_container} = {container_column} "
        f"AND {_grantee_sql(user)})"
    )


PLACEMENT = sql.Columns(Placement, "p")
OBJECT = sql.Columns(DataObject, "o")
CONTAINER = sql.Columns(Container, "c")


@cache
def _statements(vendor):
    """The permission queries, written once per database vendor (see dxweb/sql.py for why SQL)."""
    placement, obj, container = sql.name(Placement), sql.name(DataObject), sql.name(Container)
    c_id, o_id = sql.name(Container, "id"), sql.name(DataObject, "id")
    p_obj, p_container = sql.name(Placement, "obj"), sql.name(Placement, "container")
    return {
        # Parameters: container id, user id, user id.
        "level": f"SELECT {level_sql('%s')}",
        # Parameters: user id, user id, container id.
        "container": (f"SELECT {CONTAINER.sql}, {level_sql(f'c.{c_id}')} FROM {container} c WHERE c.{c_id} = %s"),
        # Parameters: user id, user id, object id, user id, user id, VIEW, the preferred container (or "").
        # The placement a user should reach the object through, with its object, container and the
        # user's level: visible first, then the preferred container, then the highest level. Only the
        # placements in containers the user holds a grant on (no other can be visible to them): an
        # applet has one in the workspace of each job it runs, and the cost of reaching it through its
        # project must not grow with them.
        "best_placement": (
            f"SELECT * FROM (SELECT {PLACEMENT.sql}, {OBJECT.sql}, {CONTAINER.sql}, p.{p_container} AS x_container, "
            f"COALESCE({level_sql(f'p.{p_container}')}, 0) AS x_level "
            f"FROM {placement} p INNER JOIN {obj} o ON o.{o_id} = p.{p_obj} "
            f"INNER JOIN {container} c ON c.{c_id} = p.{p_container} WHERE p.{p_obj} = %s "
            f"AND p.{p_container} IN ({granted_sql()})) s "
            f"ORDER BY s.x_level >= %s DESC, s.x_container = %s DESC, s.x_level DESC LIMIT 1"
        ),
        # Parameters: object id, then the containers ({containers}: their placeholders). The object's
        # placements in those containers (a job token's scopes), with its object and container.
        "placements_in": (
            f"SELECT {PLACEMENT.sql}, {OBJECT.sql}, {CONTAINER.sql}, NULL "
            f"FROM {placement} p INNER JOIN {obj} o ON o.{o_id} = p.{p_obj} "
            f"INNER JOIN {container} c ON c.{c_id} = p.{p_container} WHERE p.{p_obj} = %s "
            f"AND p.{p_container} IN ({{containers}})"
        ),
    }


def _grants_user_id(principal):
    """The id of the user whose grants count for the principal, or None: a scoped (job) token holds
    its scopes only, and an anonymous or inactive user holds nothing."""
    if principal is None or principal.scopes is not None:
        return None
    user = principal.user
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return user.pk


def _held(principal, container_id, granted):
    """The principal's level on a container, given `granted`: what the level SQL found for
    _grants_user_id(principal) (None when it was not asked)."""
    if principal is None:
        return Level.NONE
    if principal.scopes is not None:
        return Level(principal.scopes.get(container_id, Level.NONE))
    return Level(granted or Level.NONE)


def user_level(user, container_id):
    """Return the highest of the user's direct grant and every grant to an org they belong to."""
    return level_of(Principal.of(user), container_id)


def level_of(principal, container_id):
    """Return the principal's level on a container."""
    uid = _grants_user_id(principal)
    granted = None
    if uid is not None and container_id is not None:
        granted = sql.fetch(_statements(connection.vendor)["level"], [str(container_id), uid, uid])[0][0]
    return _held(principal, container_id, granted)


def launch_cap(principal):
    """What a job launched by `principal` may hold at most, to record on it: the launching job token's
    scopes ({container id: level}), or None when a user launched it (their own grants are the limit)."""
    if principal.scopes is None:
        return None
    return {cid: int(level) for cid, level in principal.scopes.items()}


def held_by(user, container_id, granted):
    """The level `user` holds on a container, given `granted`, what level_sql read for them there:
    level_of's answer without its query (an inactive user holds nothing)."""
    principal = Principal.of(user)
    return _held(principal, container_id, granted if _grants_user_id(principal) is not None else None)


def job_scopes(user, project_id, workspace_id, wanted, cap=None, held=None):
    """The scopes of a job's token: CONTRIBUTE on its workspace (its own, or its parent's for a subjob),
    and on its project the level its executable asks for (`wanted`), no more than `user`, who launched
    it, holds there. When a job launched it, `cap` (launch_cap of that job's token) bounds every
    other container too: a job never holds more than the job that launched it, and a container
    missing from the cap gets nothing. Down a chain of jobs each token is capped by the one before,
    so the lowest level on the way holds to the end. `held`: the user's level on the project, when the
    caller read it (held_by), else it is read here."""
    if held is None:
        held = level_of(Principal.of(user), project_id)
    scopes = {project_id: min(Level(wanted), held)}
    if cap is not None:
        scopes = {cid: min(level, Level(cap.get(cid, Level.NONE))) for cid, level in scopes.items()}
    return {workspace_id: int(Level.CONTRIBUTE), **{cid: int(level) for cid, level in scopes.items()}}


def _level_subquery(user, via_org):
    grants = Grant.objects.filter(container=OuterRef("pk"))
    grants = grants.filter(org__members__user=user) if via_org else grants.filter(user=user)
    return Subquery(grants.order_by("-level").values("level")[:1], output_field=IntegerField())


def visible_projects(principal, min_level=Level.VIEW):
    """Projects the principal holds at least `min_level` on, annotated with `level`."""
    user = principal.user
    if principal.scopes is not None:
        ids = [cid for cid, lvl in principal.scopes.items() if lvl >= min_level]
        cases = [When(pk=cid, then=Value(int(principal.scopes[cid]))) for cid in ids]
        qs = Container.objects.filter(pk__in=ids, kind=Container.PROJECT)
        return qs.annotate(level=Case(*cases, default=Value(0), output_field=IntegerField()))
    qs = Container.objects.filter(kind=Container.PROJECT).annotate(
        level=Greatest(
            Coalesce(_level_subquery(user, False), Value(0)),
            Coalesce(_level_subquery(user, True), Value(0)),
        )
    )
    return qs.filter(level__gte=min_level)


def visible_container_ids(principal):
    """The ids of the containers the principal holds at least VIEW on, to filter with `__in`.

    Cheaper than visible_projects for that: the principal's grants alone, no level worked out per container.
    Every grant is VIEW or more (a lowered grant below VIEW is deleted).
    """
    if principal.scopes is not None:
        return [cid for cid, lvl in principal.scopes.items() if lvl >= Level.VIEW]
    return Grant.objects.filter(_grant_filter(principal.user)).values("container_id")


def permission_sources(user, container_id):
    """Return {grantee id: level} for each grant that gives `user` access to the container."""
    sources = {}
    for grant in Grant.objects.filter(_grant_filter(user), container_id=container_id).select_related("user"):
        sources[grant.grantee_id] = Level(grant.level).label
    return sources


def effective_access(container):
    """List everyone who can reach the container: (user, level, [(source, level)...]), highest first."""
    people = {}
    for grant in Grant.objects.filter(container=container).select_related("user", "org"):
        if grant.user_id:
            members = [(grant.user, "direct")]
        else:
            members = [(m.user, grant.org_id) for m in grant.org.members.select_related("user")]
        for user, via in members:
            entry = people.setdefault(user.pk, {"user": user, "level": 0, "via": []})
            entry["level"] = max(entry["level"], grant.level)
            entry["via"].append((via, Level(grant.level).label))
    rows = sorted(people.values(), key=lambda e: (-e["level"], e["user"].username))
    for row in rows:
        row["level"] = Level(row["level"]).label
    return rows


def require_level(held, container_id, needed):
    """Raise unless `held` reaches `needed` (below VIEW: as if the container did not exist); return it."""
    if held < Level.VIEW:
        raise ResourceNotFound(f"The entity {container_id} could not be found")
    if held < needed:
        raise PermissionDenied(
            f"{Level(needed).label} permission is required in {container_id}; you have {Level(held).label}"
        )
    return held


def reaches(held, needed):
    """Return whether a level held is `needed` or more: what a page may offer its viewer."""
    return Level(held) >= needed


def holds(principal, container_id, needed=Level.VIEW):
    """Return whether the principal holds `needed` on the container (asked again at each call)."""
    return reaches(level_of(principal, container_id), needed)


def check_level(principal, container_id, needed):
    """Raise unless the principal holds `needed` on the container; return the level held."""
    return require_level(level_of(principal, container_id), container_id, needed)


def access_container(principal, container_id, needed=Level.VIEW, kinds=(Container.PROJECT, Container.WORKSPACE)):
    """Return the container if the principal holds `needed` on it.

    One query: the container and the principal's level on it.
    """
    if not isinstance(container_id, str):
        raise ResourceNotFound("A project ID must be a string")
    uid = _grants_user_id(principal)
    rows = sql.fetch(_statements(connection.vendor)["container"], [uid, uid, container_id])
    if not rows:
        raise ResourceNotFound(f"The entity {container_id} could not be found")
    container = CONTAINER.load(rows[0])
    if container.kind not in kinds:
        raise ResourceNotFound(f"The entity {container_id} could not be found")
    container.level = require_level(_held(principal, container.pk, rows[0][-1]), container.pk, needed)
    return container


def access_object(principal, object_id, needed=Level.VIEW, project=None, cls=None):
    """Return the placement of a data object the principal can see, preferring the `project` hint.

    `needed` is checked on the container of the returned placement. One query: for a user, the
    best placement (visible, in `project`, of the highest level), chosen by the database; for a job
    token, the object's placements in the containers of its scopes; nothing for anyone else.
    """
    if not isinstance(object_id, str):
        raise ResourceNotFound(f"The entity {object_id} could not be found")
    uid = _grants_user_id(principal)
    statements = _statements(connection.vendor)
    if uid is not None:
        rows = sql.fetch(statements["best_placement"], [uid, uid, object_id, uid, uid, int(Level.VIEW), project or ""])
    elif principal is not None and principal.scopes:
        scoped = sorted(principal.scopes)
        rows = sql.fetch(
            statements["placements_in"].format(containers=sql.placeholders(len(scoped))), [object_id, *scoped]
        )
    else:
        rows = []
    visible = []
    for row in rows:
        placement = PLACEMENT.load(row)
        placement.level = _held(principal, placement.container_id, row[-1])
        if placement.level < Level.VIEW:
            continue
        placement.obj = OBJECT.load(row, PLACEMENT.width)
        if cls and placement.obj.cls != cls:
            continue
        placement.container = CONTAINER.load(row, PLACEMENT.width + OBJECT.width)
        visible.append(placement)
    if not visible:
        raise ResourceNotFound(f"The entity {object_id} could not be found")
    best = max(visible, key=lambda p: (p.container_id == project, p.level))
    if best.level < needed:
        raise PermissionDenied(
            f"{Level(needed).label} permission is required in {best.container_id}; you have {Level(best.level).label}"
        )
    return best


def access_user(principal, user_id):
    """Return the user named by `user-<handle>`; any signed-in principal may see a user's public face."""
    handle = user_id[5:] if isinstance(user_id, str) and user_id.startswith("user-") else None
    user = User.objects.filter(username=handle, is_active=True).first() if handle else None
    if user is None:
        raise ResourceNotFound(f"The entity {user_id} could not be found")
    return user


def access_self(principal, user_id):
    """Return the user named by `user-<handle>` if it is the caller; a job token never qualifies."""
    user = access_user(principal, user_id)
    if user != principal.user or principal.scopes is not None:
        raise PermissionDenied("Only the user may update their own account")
    return user


def require_personal_token(principal, action):
    """Raise unless the caller acts with the user's own token: job tokens cannot `action`."""
    if principal.scopes is not None:
        raise PermissionDenied(f"Job tokens cannot {action}")


def org_role(user, org):
    member = OrgMember.objects.filter(org=org, user=user).first()
    return member.level if member else None


def access_org(principal, org_id, admin=False):
    """Return the org if the principal is a member (an ADMIN when `admin`)."""
    org = Org.objects.filter(pk=org_id).first() if isinstance(org_id, str) else None
    role = org_role(principal.user, org) if org is not None and principal.scopes is None else None
    if role is None:
        raise ResourceNotFound(f"The entity {org_id} could not be found")
    if admin and role != OrgMember.ADMIN:
        raise PermissionDenied(f"ADMIN membership of {org_id} is required")
    org.role = role
    return org
