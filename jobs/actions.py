"""State changes on jobs: launching, resolving references, finishing, failing and terminating.

Nothing else writes Job.state: every change goes through transition(), except a claim's own swap
(runnable -> running in _take), which is that transition with the token and the try in one statement.
"""

import logging
import secrets
from functools import cache

from django.conf import settings
from django.db import connection, models, transaction

from dxweb import sql
from dxweb.errors import InvalidInput, InvalidState, PermissionDenied
from dxweb.ids import id_class, new_id
from dxweb.transactions import atomic as call_atomic
from dxweb.validation import get, string_list, string_map
from projects import actions as project_actions
from projects.models import ApiToken, Container, DataObject, Level, Placement, now_ms
from projects.permissions import access_container, access_object, held_by, job_scopes, launch_cap, require_level

from . import dispatch, notifications, scheduler
from .logs.store import notify_state
from .models import (
    DEBUG_REASONS,
    FINAL_STATES,
    PRIORITIES,
    TRANSITIONS,
    AppVersion,
    Job,
    JobDependency,
    JobTransition,
    LauncherShare,
    State,
)
from .permissions import access_job, check_jobs_visible, load_job
from .references import analysis_refs_to_jbors, links_in, refs_in, substitute
from .signals import stage_job_ended
from .specs import check_applet_specs, check_input, timeout_seconds

log = logging.getLogger(__name__)


# A job's JSON fields that may be large (a spec, n references): left unread where a job is only checked.
LARGE_FIELDS = ("spec", "input", "original_input", "run_input", "output", "details")


class TransitionError(Exception):
    """A state change the transitions table does not allow."""


def transition(job_id, new_state, expected=None, only_if=None, known=None, childless=False, **fields):
    """Move a job to `new_state` by compare-and-swap; return True if this call made the change.

    `expected` narrows the states it may leave. False means the job was not in
    such a state (another worker or request won); a change the table forbids
    from the current state also returns False, so racing callers need no locks.
    `only_if` adds Job lookups to the swap's condition: the lease a runner holds
    ({"tries": n}), or a reaper's "the lease is still lapsed"; `childless`: only if every child of the
    job is done.

    `known`, the Job as its caller read it in the one state `expected` names (the runner's), spares
    the read before the swap: if the job moved since, the swap misses and the read comes after all.
    The Job is then updated in place.
    """
    only_if = only_if or {}
    conditions = []
    if childless:
        conditions.append(~models.Exists(Job.objects.filter(parent_id=job_id).exclude(state=State.DONE)))
    new_state = State(new_state)
    sources = {s for s, targets in TRANSITIONS.items() if new_state in targets}
    if expected is not None:
        unknown = {State(s) for s in expected} - sources
        if unknown:
            raise TransitionError(f"{', '.join(sorted(unknown))} -> {new_state} is not an allowed transition")
        sources = {State(s) for s in expected}
    trusted = known if known is not None and len(sources) == 1 else None
    while True:
        if trusted is not None:
            row = (next(iter(sources)), known.started_running, known.project_id, known.launched_by_id, known.token_id)
            trusted = None
        else:
            row = (
                Job.objects.filter(*conditions, pk=job_id, **only_if)
                .values_list("state", "started_running", "project_id", "launched_by_id", "token_id")
                .first()
            )
            if row is None or row[0] not in sources:
                return False
        current, started, project_id, launcher_id, token_id = row
        now = now_ms()
        updates = {"state": new_state, "modified": now, **fields}
        if new_state == State.RUNNING and started is None:
            updates.setdefault("started_running", now)
        if new_state in FINAL_STATES:
            updates["token"] = None  # revoked below, in the same transaction
            if started is not None:
                updates.setdefault("stopped_running", now)
        # No savepoint inside a caller's transaction (two round trips): an error here ends that
        # whole transaction anyway, as nothing catches it to go on.
        with transaction.atomic(savepoint=False):
            if _swap(job_id, current, only_if, conditions, updates, childless) == 1:
                JobTransition.objects.create(job_id=job_id, old_state=current, new_state=new_state, set_at=now)
                # Job lists and job pages re-read states when told; they also poll, for other processes.
                transaction.on_commit(lambda p=project_id, u=launcher_id: notify_state(p, u))
                if known is not None and not any(hasattr(v, "resolve_expression") for v in updates.values()):
                    for name, value in updates.items():
                        setattr(known, name, value)
                else:
                    known = None
                if new_state in FINAL_STATES:
                    _on_final(job_id, token_id, known)
                return True
        # The state moved between our read and our write: look again.


def _swap(job_id, current, only_if, conditions, updates, childless):
    """transition()'s UPDATE: how many rows it changed (1 or 0).

    Runners make it at every job's start and end: there, with conditions on plain fields (the
    lease's try) and at most `childless`, it is SQL written here, which the ORM took a millisecond
    of Python to build; any other is the ORM's. A `sql.DatabaseNow()` value (a lease's heartbeat) is
    the database's clock, written as such and read back into `updates`."""
    clock = [name for name, value in updates.items() if isinstance(value, sql.DatabaseNow)]
    if clock and connection.vendor == "sqlite":  # its clock is this host's: the value, known here
        now = sql.database_now_ms()
        updates.update(dict.fromkeys(clock, now))
        clock = []
    plain = all("__" not in key for key in only_if)
    plain = plain and not any(
        hasattr(value, "resolve_expression") and name not in clock for name, value in updates.items()
    )
    if not plain:
        return Job.objects.filter(*conditions, pk=job_id, state=current, **only_if).update(**updates)
    table = sql.name(Job)

    def column(name):
        return sql.name(Job, name)

    sets, params = _job_sets(updates, clock)
    tests = [f"{column('id')} = %s", f"{column('state')} = %s", *(f"{column(k)} = %s" for k in only_if)]
    params += [job_id, current, *only_if.values()]
    if childless:
        tests.append(
            f"NOT EXISTS (SELECT 1 FROM {table} c WHERE c.{column('parent')} = %s AND c.{column('state')} <> %s)"
        )
        params += [job_id, State.DONE]
    # The database's clock is read back into `updates`, for the caller's copy of the job.
    returning = f" RETURNING {', '.join(column(name) for name in clock)}" if clock else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {sets} WHERE {' AND '.join(tests)}{returning}", params)
        if not clock:
            return cursor.rowcount
        row = cursor.fetchone()
    if row is None:
        return 0
    updates.update(zip(clock, row, strict=True))
    return 1


def _job_sets(updates, clock):
    """The SET list of an UPDATE of Job to `updates` and its parameters; the fields named in `clock` are
    set to the database's clock."""
    sets, params = [], []
    for name, value in updates.items():
        if name in clock:
            sets.append(f"{sql.name(Job, name)} = {sql.NOW_SQL[connection.vendor]}")
            continue
        field = Job._meta.get_field(name)
        if hasattr(value, "prepare_database_save"):
            value = value.prepare_database_save(field)
        sets.append(f"{sql.name(Job, name)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    return ", ".join(sets), params


# Applets ---------------------------------------------------------------------------

# /applet/new keys kept as the applet's content (returned by describe and get).
APPLET_KEYS = (
    "title",
    "summary",
    "description",
    "dxapi",
    "version",
    "inputSpec",
    "outputSpec",
    "runSpec",
    "access",
    "ignoreReuse",
    "treeTurnaroundTimeThreshold",
)


def new_applet(user, container, body):
    """/applet/new (and the applet form): check the specs and create a closed applet; return its placement."""
    check_applet_specs(body, container.region)
    spec = {key: body[key] for key in APPLET_KEYS if key in body}
    spec.setdefault("dxapi", "1.0.0")
    spec.setdefault("access", {})
    for key in ("title", "summary", "description"):
        spec.setdefault(key, "")
    return project_actions.new_object(
        user,
        container,
        "applet",
        **project_actions.new_object_fields(body, "untitled-applet"),
        state=DataObject.CLOSED,
        spec=spec,
    )


# Launching -------------------------------------------------------------------------


def allow_ssh_from(principal, job_id):
    """Add the caller's address to the job's allowSSH, as `dx ssh` does (CONTRIBUTE, as /job-x/update)."""
    job = access_job(principal, job_id, Level.CONTRIBUTE)
    _check_open(job)
    if not principal.client_ip:
        raise InvalidInput("Your address is not known")
    if principal.client_ip not in job.allow_ssh:
        job.allow_ssh = [*job.allow_ssh, principal.client_ip]
        Job.objects.filter(pk=job.pk).update(allow_ssh=job.allow_ssh, modified=now_ms())
    return job


def _check_open(job):
    """Raise unless the job can still be reached: allowSSH means nothing once it has finished."""
    if job.is_final:
        raise InvalidState(f"{job.id} has already finished ({job.state})")


def update_job(principal, job, body):
    """Apply /job-x/update to a job the caller may change (CONTRIBUTE): its name and allowSSH."""
    fields = {}
    if "allowSSH" in body:
        fields["allow_ssh"] = string_list(body, "allowSSH")
    if "name" in body:
        fields["name"] = project_actions.clean_name(get(body, "name", str))
    if "allow_ssh" in fields:
        _check_open(job)
    for field, value in fields.items():
        setattr(job, field, value)
    job.modified = now_ms()
    job.save(update_fields=["allow_ssh", "name", "modified"])
    return job


def calling_job(principal):
    """The job behind a job token, or None for a user's token."""
    if not principal.job_id:
        return None
    job = load_job(principal.job_id)
    if job is None or job.is_final:
        raise InvalidState(f"{principal.job_id} has finished; its token can no longer launch jobs")
    return job


def _instance_type(body, function, run_spec):
    requested = get(body, "systemRequirements", dict, {})
    for source in (requested, run_spec.get("systemRequirements", {})):
        entry = source.get(function) or source.get("*")
        if isinstance(entry, dict) and entry.get("instanceType"):
            itype = entry["instanceType"]
            if not isinstance(itype, str) or itype not in settings.DXWEB_INSTANCE_TYPES:
                raise InvalidInput(
                    f"Unknown instance type {itype!r}; available: {', '.join(sorted(settings.DXWEB_INSTANCE_TYPES))}",
                    field="systemRequirements",
                )
            return itype
    return settings.DXWEB_DEFAULT_INSTANCE_TYPE


def _timeout(body, executable, function, run_spec):
    overrides = get(body, "timeoutPolicyByExecutable", dict, {}).get(executable)
    for policy in (overrides, run_spec.get("timeoutPolicy")):
        if isinstance(policy, dict):
            limit = policy.get(function) or policy.get("*")
            if limit is not None:
                return timeout_seconds(limit, f"timeoutPolicy.{function}", field="timeoutPolicy")
    return None


def _debug(body):
    debug = get(body, "debug", dict, {})
    on = debug.get("debugOn", [])
    if not isinstance(on, list) or not set(on) <= {*DEBUG_REASONS, "All"}:
        raise InvalidInput(
            f'debug.debugOn must be an array of {", ".join(sorted(DEBUG_REASONS))} or "All"', field="debug"
        )
    return {"debugOn": sorted(DEBUG_REASONS) if "All" in on else on} if on else {}


def _common_fields(body):
    priority = get(body, "priority", str, "normal")
    if priority not in PRIORITIES:
        raise InvalidInput('"priority" must be "low", "normal" or "high"', field="priority")
    return {
        "tags": project_actions.clean_tags(string_list(body, "tags", [])),
        "properties": project_actions.clean_properties(string_map(body, "properties", default={})),
        "details": get(body, "details", (dict, list), {}),
        "priority": priority,
        "debug": _debug(body),
        "allow_ssh": string_list(body, "allowSSH", []),
    }


def _dependencies(principal, input_value, depends_on):
    """What a new job waits for ({job id: stage}): the jobs its input references and its dependsOn,
    every one visible to the launcher."""
    on = {}
    for ref in refs_in(input_value):
        on[ref["job"]] = JobDependency.INPUT
    for dep in depends_on:
        if id_class(dep) != "job":
            raise InvalidInput(f"dependsOn: {dep!r} is not a job ID")
        on[dep] = JobDependency.INPUT
    for dep_id in on:
        if id_class(dep_id) != "job":
            raise InvalidInput(f"{dep_id!r} in a job-based object reference is not a job ID")
    check_jobs_visible(principal, on)
    return on


def _first_state(waits):
    """The state a new job is made in: idle while it has jobs to wait for (_schedule moves it on),
    else runnable at once (one write less than making it idle and then runnable)."""
    return State.IDLE if waits else State.RUNNABLE


def _link_inputs(principal, workspace_id, input_value, present=None):
    """Make every data object named in the input visible in the job's workspace.

    `present`: the IDs of every object in the workspace, when the caller knows them (a new one)."""
    wanted = {}
    for obj_id, hint in links_in(input_value):
        placement = access_object(principal, obj_id, Level.VIEW, project=hint)
        if placement.obj.state != "closed":
            raise InvalidState(f"The input {obj_id} is not closed")
        wanted.setdefault(obj_id, placement)
    if not wanted:
        return
    if present is None:
        present = set(
            Placement.objects.filter(container_id=workspace_id, obj_id__in=wanted).values_list("obj_id", flat=True)
        )
    Placement.objects.bulk_create(
        Placement(container_id=workspace_id, obj=p.obj, folder="/", name=p.name)
        for i, p in wanted.items()
        if i not in present
    )


def _project_to_run_in(principal, placement, project_id):
    """The project a user runs an executable in (CONTRIBUTE): when it is the one the applet was found in,
    as access_object read it, with the caller's level there (one read less), else access_container's."""
    found = Placement.container.is_cached(placement) and getattr(placement, "level", None) is not None
    if found and placement.container_id == project_id and placement.container.kind == Container.PROJECT:
        project = placement.container
        project.level = require_level(placement.level, project.pk, Level.CONTRIBUTE)
        return project
    return access_container(principal, project_id, Level.CONTRIBUTE, kinds=(Container.PROJECT,))


@call_atomic
def run_applet(principal, placement, body, analysis=None, stage="", app=None):
    """/applet-x/run: a new origin job with its own workspace (or an analysis's job for `stage`).

    With `app` (an AppVersion; `placement` its frozen applet), the job runs that app version: its
    frozen specs, its name, and its resources placed in the job's workspace."""
    applet, spec = placement.obj, placement.obj.spec
    executable, executable_name = applet.pk, placement.name
    if app is not None:
        spec, executable, executable_name = app.spec, app.pk, app.app.name
    caller = calling_job(principal)
    if analysis is not None:  # a stage's job: at the top of its own tree, in the analysis's project
        project, parent, root = analysis.project, None, None
    elif caller is None:
        project = _project_to_run_in(principal, placement, get(body, "project", str))
        parent, root = None, None
    else:
        project, parent, root = caller.project, caller, caller.root or caller
    run_input = analysis_refs_to_jbors(get(body, "input", dict, {}))
    resolved = check_input(spec.get("inputSpec"), run_input)
    function = "main"
    job_id = new_id("job")
    fields = dict(
        name=project_actions.clean_name(get(body, "name", str, executable_name)),
        applet=applet,
        executable=executable,
        executable_name=executable_name,
        spec=spec,
        function=function,
        project=project,
        folder=project_actions.clean_folder(get(body, "folder", str, "/")),
        parent=parent,
        parent_try=max(parent.tries - 1, 0) if parent else None,
        launched_by=principal.user,
        launcher_scopes=launch_cap(principal),
        input=resolved,
        original_input=run_input,
        run_input=run_input,
        depends_on=string_list(body, "dependsOn", []),
        instance_type=_instance_type(body, function, spec["runSpec"]),
        timeout_s=_timeout(body, executable, function, spec["runSpec"]),
        delay_workspace_destruction=get(body, "delayWorkspaceDestruction", bool, False),
        analysis=analysis,
        stage=stage,
        **_common_fields(body),
    )
    # The workspace first: the job is then made whole in one statement (its own origin and, at the top
    # of a tree, its own root).
    waits = _dependencies(principal, run_input, fields["depends_on"])
    workspace = project_actions.create_container(None, f"workspace of {job_id}", kind=Container.WORKSPACE)
    job = Job.objects.create(
        id=job_id,
        state=_first_state(waits),
        workspace=workspace,
        origin_id=job_id,
        root_id=root.pk if root else job_id,
        **fields,
    )
    job.origin = job
    job.root = root or job
    # The job describes its own applet (dx-print-bash-vars reads its inputSpec): its token sees the
    # workspace, not the applet's project, which may be another one than the job's.
    placed = [Placement(container=workspace, obj=applet, folder="/", name=placement.name)]
    if app is not None and app.resources_id:  # the app's resources bundle, for its bundledDepends
        for item in Placement.objects.filter(container_id=app.resources_id).exclude(obj_id=applet.pk):
            placed.append(Placement(container=workspace, obj_id=item.obj_id, folder="/", name=item.name))
    Placement.objects.bulk_create(placed)
    # The workspace is new: nothing but the above is in it yet.
    _link_inputs(principal, workspace.pk, run_input, present={p.obj_id for p in placed})
    _schedule(job, waits)
    return job


@call_atomic
def new_subjob(principal, body):
    """/job/new from inside a job: a child running another entry point of the same applet."""
    caller = calling_job(principal)
    if caller is None:
        raise PermissionDenied("/job/new is called with a job's token (DX_SECURITY_CONTEXT inside a job)")
    function = get(body, "function", str)
    if not function:
        raise InvalidInput('"function" must name an entry point')
    run_input = analysis_refs_to_jbors(get(body, "input", dict, {}))
    depends_on = string_list(body, "dependsOn", [])
    waits = _dependencies(principal, run_input, depends_on)
    # The caller's relations by their ids: a scatter's root makes its subjobs one call each, and
    # reading the applet, workspace, origin and root for each was half of the call's statements.
    job = Job.objects.create(
        id=new_id("job"),
        state=_first_state(waits),
        name=project_actions.clean_name(get(body, "name", str, f"{caller.name}:{function}")),
        applet_id=caller.applet_id,
        executable=caller.executable,
        executable_name=caller.executable_name,
        spec=caller.spec,
        function=function,
        project=caller.project,
        workspace_id=caller.workspace_id,
        folder=caller.folder,
        parent=caller,
        parent_try=max(caller.tries - 1, 0),
        origin_id=caller.origin_id or caller.pk,
        root_id=caller.root_id or caller.pk,
        launched_by=caller.launched_by,
        launcher_scopes=launch_cap(principal),
        input=run_input,
        original_input=run_input,
        run_input=run_input,
        depends_on=depends_on,
        instance_type=_instance_type(body, function, caller.spec.get("runSpec", {})),
        timeout_s=_timeout(body, caller.executable, function, caller.spec.get("runSpec", {})),
        **_common_fields(body),
    )
    _link_inputs(principal, caller.workspace_id, run_input)
    _schedule(job, waits)
    return job


def _schedule(job, waits):
    """A new job, made in _first_state(waits): record what it waits for and wait on its inputs, or, made
    runnable, record that and send it to the workers."""
    if waits:
        JobDependency.objects.bulk_create(JobDependency(job=job, on_id=on, stage=stage) for on, stage in waits.items())
        transition(job.pk, State.WAITING_ON_INPUT, expected=[State.IDLE])
        advance_inputs(job.pk)
        # And once more when this job and its dependencies are committed: one that ended meanwhile,
        # committing before this job, found no dependant to wake (see _wake).
        transaction.on_commit(lambda: advance_inputs(job.pk))
        return
    JobTransition.objects.create(job_id=job.pk, old_state=State.IDLE, new_state=State.RUNNABLE, set_at=job.modified)
    transaction.on_commit(lambda: (notify_state(job.project_id, job.launched_by_id), dispatch.run_job(job.pk)))


def _make_runnable(job_id, from_state, known=None, **fields):
    """`known`: the Job as read (or made) in `from_state`, which spares transition() its read."""
    if transition(job_id, State.RUNNABLE, expected=[from_state], known=known, **fields):
        transaction.on_commit(lambda: dispatch.run_job(job_id))
        return True
    return False


def advance_inputs(job_id):
    """Run a waiting job once everything it waits for is done; fail it if one of them failed.

    Every job it waits for calls this as it ends: a gather of n subjobs hears it n times. So each call
    reads only the states it needs, in the database, and the outputs once, when all are done."""
    state, waiting_on = _look(job_id, JobDependency.INPUT)
    if state != State.WAITING_ON_INPUT or waiting_on not in (None, State.FAILED, State.TERMINATED):
        return  # the common answer, in one statement: not waiting, or still waiting on a job
    job = Job.objects.filter(pk=job_id, state=State.WAITING_ON_INPUT).defer(*LARGE_FIELDS).first()
    if job is None:
        return
    deps = Job.objects.filter(dependants__job=job, dependants__stage=JobDependency.INPUT)
    broken = deps.filter(state__in=(State.FAILED, State.TERMINATED)).values_list("id", "name", "state").first()
    if broken:
        fail(job, "DependencyFailed", f"{broken[0]} ({broken[1]}) is {broken[2]}; this job depended on it")
        return
    if deps.exclude(state=State.DONE).exists():
        return
    try:
        resolved = substitute(job.input, dict(deps.values_list("id", "output")))
    except InvalidInput as err:
        fail(job, "InputError", err.message)
        return
    # Several jobs ending at once may each find everything done: the swap lets one of them go on.
    with transaction.atomic():
        if _make_runnable(job.pk, State.WAITING_ON_INPUT, input=resolved):
            _link_inputs_after_resolution(job, resolved)  # before the run task is sent (on commit)


def _link_inputs_after_resolution(job, resolved):
    """Data named by resolved references comes from the same tree's workspaces: place it in this one."""
    for obj_id, _ in links_in(resolved):
        if job.workspace_id and not Placement.objects.filter(container_id=job.workspace_id, obj_id=obj_id).exists():
            source = Placement.objects.filter(obj_id=obj_id).first()
            if source is not None:
                Placement.objects.create(container_id=job.workspace_id, obj=source.obj, folder="/", name=source.name)


# Running -------------------------------------------------------------------------------


def app_resources(job):
    """The resources container of the app version a job runs (DX_RESOURCES_ID), or None."""
    if not job.executable.startswith("app-"):
        return None
    return AppVersion.objects.filter(pk=job.executable).values_list("resources_id", flat=True).first()


def claim(job_id, worker):
    """Take the runnable job `job_id` for `worker`; return (job, its new token) or None if someone else has it."""
    job = (
        Job.objects.select_related("project", "workspace", "launched_by")
        .filter(pk=job_id, state=State.RUNNABLE)
        .first()
    )
    if job is None:
        return None
    with transaction.atomic():
        return _take(job, worker)


def claim_next(worker, host, cap, ending=()):
    """Take the runnable job this worker host should run next (jobs/scheduler.py); return (job, its
    new token), or None when no runnable job fits what the host has free (`ending`: see
    scheduler.pick).

    Each attempt is one transaction: the host's lock, the choice, the token and the swap. Another host
    may win the swap for the same job; the loser chooses again.
    """
    for _ in range(5):
        with scheduler.claiming(host), transaction.atomic():
            job = scheduler.pick(host, cap, ending)
            if job is None:
                return None
            taken = _take(job, worker)
            if taken is not None:
                return taken
    return None


def _take(job, worker):
    """Inside a transaction: swap the runnable `job` to running for `worker` with a new token; return
    (job, token) or None (rolling the transaction back) if it was no longer runnable.

    `job.tries` identifies this claim: pass {"tries": job.tries} as `only_if` to record its result
    (`tries` is the lease's generation, which the runner's heartbeats and results are fenced on).

    The token exists only while the job runs: CONTRIBUTE on the workspace and, on the
    project, the applet's access.project level (VIEW by default) capped by the launcher's, and
    by the launching job's token when a job launched it (see job_scopes).
    """
    wanted = Level.parse(job.spec.get("access", {}).get("project", "VIEW")) or Level.VIEW
    held = None
    if hasattr(job, "launcher_level"):  # read with the job (scheduler.pick)
        held = held_by(job.launched_by, job.project_id, job.launcher_level)
    scopes = job_scopes(job.launched_by, job.project_id, job.workspace_id, wanted, job.launcher_scopes, held)
    resources = app_resources(job)
    if resources:  # an app's job reads its resources container (DX_RESOURCES_ID)
        scopes.setdefault(resources, int(Level.VIEW))
    now = now_ms()
    # The lease's first heartbeat is on the database's clock, as every later one and the reaper's.
    fields = {"state": State.RUNNING, "worker": worker, "heartbeat": sql.DatabaseNow(), "tries": job.tries + 1}
    fields["modified"] = now
    if job.started_running is None:
        fields["started_running"] = now
    if connection.vendor == "postgresql":
        token, raw = _take_at_once(job, fields, scopes, now)
        if token is None:
            return None
    else:
        token, raw = ApiToken.issue(job.launched_by, f"job token for {job.id}", scopes=scopes, job_id=job.id)
        fields["token"] = token
        # The swap: only if nobody took the job (nor another try came and went) since it was read.
        if not _swap(job.pk, State.RUNNABLE, {"tries": job.tries}, [], fields, childless=False):
            transaction.set_rollback(True)  # a lost race leaves no token behind
            return None
        JobTransition.objects.create(job_id=job.pk, old_state=State.RUNNABLE, new_state=State.RUNNING, set_at=now)
        scheduler.served(job.launched_by_id, now)
    transaction.on_commit(lambda: notify_state(job.project_id, job.launched_by_id))
    fields["token"] = token
    for name, value in fields.items():
        setattr(job, name, value)
    return job, raw


def _take_at_once(job, fields, scopes, now):
    """PostgreSQL: _take's four writes (the token, the swap, the transition, the launcher's share) as one
    statement, a round trip each fewer under the host's claim lock. Return (token, raw secret), or
    (None, None) if the job was no longer runnable at `job.tries`: then nothing was written. The
    database's clock it wrote (the heartbeat) is read back into `fields`, as _swap does.

    The token's id is drawn first and written with the swap; the token, the transition and the share
    are inserted only from the swap's row (the job's foreign key to its token is checked at commit).
    """
    raw = secrets.token_urlsafe(32)
    token = ApiToken(
        user=job.launched_by,
        name=f"job token for {job.id}"[:100],
        digest=ApiToken.digest_of(raw),
        hint=raw[:6],
        scopes=scopes,
        job_id=job.id,
    )
    values = {  # as the ORM's insert would write them (pre_save: the `created` of auto_now_add)
        f.column: f.get_db_prep_save(f.pre_save(token, add=True), connection)
        for f in ApiToken._meta.concrete_fields
        if not f.primary_key
    }
    job_table, tokens, transitions, shares = (sql.name(m) for m in (Job, ApiToken, JobTransition, LauncherShare))
    quote = connection.ops.quote_name
    clock = [name for name, value in fields.items() if isinstance(value, sql.DatabaseNow)]
    sets, params = _job_sets(fields, clock)
    moved = ", ".join(sql.name(JobTransition, f) for f in ("job", "old_state", "new_state", "set_at"))
    user, last_claim = sql.name(LauncherShare, "user"), sql.name(LauncherShare, "last_claim")
    job_id = sql.name(Job, "id")
    sequence = f"pg_get_serial_sequence('{ApiToken._meta.db_table}', '{ApiToken._meta.pk.column}')"
    statement = (
        f"WITH nid AS (SELECT nextval({sequence}) AS id), "
        f"swap AS (UPDATE {job_table} SET {sql.name(Job, 'token')} = (SELECT id FROM nid), {sets} WHERE {job_id} = %s "
        f"AND {sql.name(Job, 'state')} = %s AND {sql.name(Job, 'tries')} = %s "
        f"RETURNING {', '.join([job_id, *(sql.name(Job, f) for f in clock)])}), "
        f"tok AS (INSERT INTO {tokens} ({', '.join(quote(c) for c in [ApiToken._meta.pk.column, *values])}) "
        f"SELECT (SELECT id FROM nid), {sql.placeholders(len(values))} FROM swap), "
        f"moved AS (INSERT INTO {transitions} ({moved}) SELECT {job_id}, %s, %s, %s FROM swap), "
        f"share AS (INSERT INTO {shares} ({user}, {last_claim}) SELECT %s, %s FROM swap "
        f"ON CONFLICT ({user}) DO UPDATE SET {last_claim} = EXCLUDED.{last_claim}) "
        f"SELECT (SELECT id FROM nid){''.join(f', {sql.name(Job, f)}' for f in clock)} FROM swap"
    )
    params += [job.pk, State.RUNNABLE, job.tries, *values.values()]
    params += [State.RUNNABLE, State.RUNNING, now, job.launched_by_id, now]
    found = sql.fetch(statement, params)
    if not found:
        return None, None
    token.pk = found[0][0]
    token._state.adding = False
    fields.update(zip(clock, found[0][1:], strict=True))  # the database's clock, for the caller's copy
    return token, raw


# Finishing ------------------------------------------------------------------------------


def _stopped(at):
    """The stoppedRunning a runner gives: when the job's code ended, which its end's record may follow."""
    return {} if at is None else {"stopped_running": at}


def finish(job_id, output, only_if=None, known=None, stopped=None):
    """The job's code ended well with `output`: done, or waiting_on_output on children and references.

    Return True if this call recorded it (False: the job was no longer this `only_if`'s to finish).
    `known`, the runner's Job (running), spares reading it again; `stopped`, when the code ended (ms;
    default now), is its stoppedRunning."""
    only_if = only_if or {}
    job = known or Job.objects.get(pk=job_id)
    refs = refs_in(output)
    on = list(dict.fromkeys(ref["job"] for ref in refs))
    in_tree = _in_tree([ref for ref in on if id_class(ref) == "job"], job.root_id) if on else set()
    stranger = next((ref for ref in on if ref not in in_tree), None)
    if stranger:
        return fail(
            job,
            "AppError",
            f"The output references {stranger}, which is not a job of this execution tree",
            only_if=only_if,
        )
    if on:  # (an empty bulk_create still opens a transaction: on SQLite, the write lock for nothing)
        JobDependency.objects.bulk_create(
            [JobDependency(job=job, on_id=ref, stage=JobDependency.OUTPUT) for ref in on], ignore_conflicts=True
        )
    # Nothing to wait for (no reference, no unfinished child): done at once, the output stored in
    # the same swap. (A child ending meanwhile finds its parent still running, and a child not done
    # yet sends it through waiting_on_output below.)
    if not refs and transition(
        job_id,
        State.DONE,
        expected=[State.RUNNING],
        only_if=only_if,
        childless=True,
        known=known,
        output=output,
        **_stopped(stopped),
    ):
        return True
    if not Job.objects.filter(pk=job_id, state=State.RUNNING, **only_if).update(output=output):
        return False  # no longer ours to finish (terminated, or a later try holds the lease)
    if transition(job_id, State.WAITING_ON_OUTPUT, expected=[State.RUNNING], only_if=only_if):
        complete_outputs(job_id)
    return True


@cache
def _look_statements(vendor):
    """advance_inputs' and complete_outputs' first look, one statement each (written once per vendor, as
    dxweb/sql.py explains): the job's state and whether it still waits. Each answers one row, or none
    for a job that is gone. Parameters: _look's.

    - "input": and the state of one job it waits on as input that is not done, a failed or terminated
      one first (NULL when all are done);
    - "output": and whether a child of it, or a job its output references, is not done yet.
    """
    job, dep = sql.name(Job), sql.name(JobDependency)
    jid, state, parent = (sql.name(Job, f) for f in ("id", "state", "parent"))
    of, on, stage = (sql.name(JobDependency, f) for f in ("job", "on", "stage"))
    not_done = (
        f"FROM {dep} x JOIN {job} d ON d.{jid} = x.{on} WHERE x.{of} = j.{jid} AND x.{stage} = %s AND d.{state} <> %s"
    )
    return {
        "input": (
            f"SELECT j.{state}, (SELECT d.{state} {not_done} "
            f"ORDER BY CASE WHEN d.{state} IN (%s, %s) THEN 0 ELSE 1 END LIMIT 1) "
            f"FROM {job} j WHERE j.{jid} = %s"
        ),
        "output": (
            f"SELECT j.{state}, EXISTS (SELECT 1 FROM {job} c WHERE c.{parent} = j.{jid} AND c.{state} <> %s) "
            f"OR EXISTS (SELECT 1 {not_done}) FROM {job} j WHERE j.{jid} = %s"
        ),
    }


def _look(job_id, stage):
    """(the job's state, what _look_statements says it waits on), or (None, None) for no such job."""
    done = State.DONE.value
    if stage == JobDependency.INPUT:
        params = [stage, done, State.FAILED.value, State.TERMINATED.value, job_id]
    else:
        params = [done, stage, done, job_id]
    rows = sql.fetch(_look_statements(connection.vendor)[stage], params)
    return rows[0] if rows else (None, None)


def _in_tree(job_ids, root_id, chunk=500):
    """Which of `job_ids` are jobs of the tree `root_id` (read in chunks: a scatter's output may name
    thousands, more than SQLite takes parameters in one statement)."""
    found = set()
    for ids in sql.chunks(job_ids, chunk):
        found.update(Job.objects.filter(pk__in=ids, root=root_id).values_list("pk", flat=True))
    return found


def complete_outputs(job_id):
    """Finish a job waiting on output once its children and referenced jobs are done.

    As advance_inputs, called as each of them ends: the outputs are read once, when all are done."""
    state, waiting = _look(job_id, JobDependency.OUTPUT)
    if state != State.WAITING_ON_OUTPUT or waiting:
        return  # the common answer, in one statement: not waiting, or still waiting on a job
    job = Job.objects.filter(pk=job_id, state=State.WAITING_ON_OUTPUT).defer(*LARGE_FIELDS).first()
    if job is None:
        return
    if job.children.exclude(state=State.DONE).exists():
        return
    deps = Job.objects.filter(dependants__job=job, dependants__stage=JobDependency.OUTPUT)
    if deps.exclude(state=State.DONE).exists():
        return
    try:
        output = substitute(job.output, dict(deps.values_list("id", "output")))
    except InvalidInput as err:
        fail(job, "AppError", err.message)
        return
    transition(job_id, State.DONE, expected=[State.WAITING_ON_OUTPUT], output=output)


def _on_final(job_id, token_id, job=None):
    """After a job reaches a final state: revoke its token, wake what waited on it, tidy its workspace.

    `job`, the Job as it now is, spares reading it again."""
    known, job = job, job or Job.objects.select_related("project").get(pk=job_id)
    if token_id:  # nothing else refers to a job's token (the swap has just cleared Job.token)
        ApiToken.objects.filter(pk=token_id)._raw_delete(ApiToken.objects.db)
    parent_id = job.parent_id
    transaction.on_commit(lambda: _wake(job_id, parent_id))
    if job.origin_id == job.id and job.state == State.DONE:
        _publish_outputs(job)
    if job.parent_id is None:  # what a user launched (not the subjobs it made): tell them it ended
        notifications.job_ended(job_id, job)
    if job.analysis_id and job.origin_id == job.pk:  # a stage's job: its analysis follows
        analysis_id = job.analysis_id
        transaction.on_commit(lambda: stage_job_ended.send(sender=Job, analysis_id=analysis_id))
    # The last job of a tree to end (the origin, or a child terminated after it) removes the workspace,
    # but for the runner's (`job` given): its worker leaves it to the next reap, which destroys the
    # workspaces of ended trees in one batch (jobs.ending.destroy_idle_workspaces).
    if known is None and job.workspace_id:
        origin = job if job.origin_id in (None, job.pk) else job.origin
        if origin.is_final and not origin.delay_workspace_destruction:
            workspace_id = job.workspace_id
            transaction.on_commit(lambda: _destroy_workspace_when_idle(workspace_id))


def _wake(job_id, parent_id):
    """Once a job's final state is committed, what waits on it looks again: jobs waiting on its output
    as input or as output, and its parent.

    After the commit, not inside the transaction: with PostgreSQL (read committed), two jobs ending
    at once would each see the other unfinished, and a dependant would wait for ever. After it, at
    least the later of the two sees both done. Dependants are read then too: a job made meanwhile
    either is seen here or, once committed, finds this job done itself (_schedule).
    """
    for dependant, stage in JobDependency.objects.filter(on_id=job_id).values_list("job_id", "stage"):
        if stage == JobDependency.INPUT:
            advance_inputs(dependant)
        elif dependant != parent_id:  # the parent looks below, once (its output often names its children)
            complete_outputs(dependant)
    if parent_id:
        complete_outputs(parent_id)


def _publish_outputs(job):
    """Clone an origin job's output objects from its workspace into the project's output folder.

    What a job launched goes into that job's workspace instead, as on DNAnexus: the launching job
    may not write to the project, and what it launches holds no more than it does.
    """
    target = job.project
    if job.parent_id is not None:
        target = Container.objects.filter(pk=job.parent.workspace_id, kind=Container.WORKSPACE).first()
        if target is None:  # the launching tree has ended and its workspace is gone
            return
    project_actions.new_folder(target, job.folder, parents=True)
    for obj_id, _ in links_in(job.output):
        source = Placement.objects.filter(container_id=job.workspace_id, obj_id=obj_id).first()
        if source is None or Placement.objects.filter(container=target, obj_id=obj_id).exists():
            continue
        Placement.objects.create(
            container=target,
            obj=source.obj,
            folder=job.folder,
            name=source.name,
            tags=list(source.tags),
            properties=dict(source.properties),
        )


def _destroy_workspace_when_idle(workspace_id):
    """Destroy a workspace once no job using it is still unfinished."""
    with transaction.atomic():
        if Job.objects.filter(workspace_id=workspace_id).exclude(state__in=FINAL_STATES).exists():
            return
        workspace = Container.objects.filter(pk=workspace_id, kind=Container.WORKSPACE).first()
        if workspace is not None:
            project_actions.destroy_container(workspace)


def fail(job, reason, message, failure_from=None, only_if=None, stopped=None):
    """Fail a job; its origin fails too (failureFrom names the first failure) and the rest of the tree ends.

    Return True if this call failed the job; `only_if` conditions that first change (see transition());
    `stopped`: as finish's.
    """
    failure_from = failure_from or job
    if not transition(
        job.pk,
        State.FAILED,
        only_if=only_if,
        failure_reason=reason,
        failure_message=message[:10000],
        failure_from=failure_from if failure_from.pk != job.pk else None,
        **_stopped(stopped),
    ):
        return False
    origin = job.origin or job
    if origin.pk != job.pk:
        fail(origin, reason, message, failure_from=failure_from)
        return True
    end_tree(origin, "Terminated", f"Terminated because {failure_from.id} failed")
    if origin.parent_id:
        fail(origin.parent, reason, message, failure_from=failure_from)
    return True


def terminate(principal, job):
    """/job-x/terminate: end the job's whole origin tree."""
    origin = job.origin or job
    if origin.is_final and not origin.origin_tree.exclude(state__in=FINAL_STATES).exists():
        raise InvalidState(f"{job.id} has already finished ({job.state})")
    who = principal.user.dx_id
    end_tree(origin, "Terminated", f"Terminated by {who}", include_origin=True)


def end_tree(origin, reason, message, include_origin=False):
    jobs = Job.objects.filter(origin=origin).exclude(state__in=FINAL_STATES)
    if not include_origin:
        jobs = jobs.exclude(pk=origin.pk)
    for job in jobs:
        # A running process is killed by its worker, which then records `terminated`.
        if job.state in (State.RUNNING, State.DEBUG_HOLD):
            transition(job.pk, State.TERMINATING, failure_reason=reason, failure_message=message)
        else:
            transition(job.pk, State.TERMINATED, failure_reason=reason, failure_message=message)
