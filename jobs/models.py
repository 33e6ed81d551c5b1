"""Jobs, their state transitions and their log lines."""

from django.db import models

from projects.models import ApiToken, Container, DataObject, User, now_ms

from .querysets import JobQuerySet
from .workflows.querysets import AnalysisQuerySet


class State(models.TextChoices):
    IDLE = "idle"
    WAITING_ON_INPUT = "waiting_on_input"
    RUNNABLE = "runnable"
    RUNNING = "running"
    WAITING_ON_OUTPUT = "waiting_on_output"
    DONE = "done"
    FAILED = "failed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    DEBUG_HOLD = "debug_hold"


FINAL_STATES = frozenset({State.DONE, State.FAILED, State.TERMINATED})
# The failures debug.debugOn may name ("All" stands for every one).
DEBUG_REASONS = ("AppError", "AppInternalError", "ExecutionError", "AppInsufficientResourceError")
PRIORITIES = ("normal", "low", "high")
# The job's home directory and working directory, inside its sandbox as on DNAnexus.
HOME = "/home/dnanexus"

# Every state change goes through jobs.actions.transition(), which allows only these.
TRANSITIONS = {
    State.IDLE: {State.WAITING_ON_INPUT, State.RUNNABLE, State.FAILED, State.TERMINATING, State.TERMINATED},
    State.WAITING_ON_INPUT: {State.RUNNABLE, State.FAILED, State.TERMINATING, State.TERMINATED},
    # runnable -> runnable is a worker's lease being released for a platform retry.
    State.RUNNABLE: {State.RUNNING, State.FAILED, State.TERMINATING, State.TERMINATED},
    State.RUNNING: {
        State.WAITING_ON_OUTPUT,
        State.DONE,
        State.FAILED,
        State.TERMINATING,
        State.DEBUG_HOLD,
        State.RUNNABLE,
    },
    State.WAITING_ON_OUTPUT: {State.DONE, State.FAILED, State.TERMINATING, State.TERMINATED},
    State.TERMINATING: {State.TERMINATED},
    State.DEBUG_HOLD: {State.FAILED, State.TERMINATING, State.TERMINATED},
    State.DONE: set(),
    State.FAILED: set(),
    State.TERMINATED: set(),
}


class Job(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    name = models.CharField(max_length=255)
    applet = models.ForeignKey(DataObject, null=True, on_delete=models.SET_NULL, related_name="+")
    # The applet's ID and specs at launch: a job runs what it was launched with.
    executable = models.CharField(max_length=40)
    executable_name = models.CharField(max_length=255, blank=True, default="")
    spec = models.JSONField(default=dict)
    function = models.CharField(max_length=255, default="main")
    project = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="jobs")
    workspace = models.ForeignKey(Container, null=True, on_delete=models.SET_NULL, related_name="workspace_jobs")
    folder = models.CharField(max_length=1024, default="/")
    parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="children")
    # The parent's try that launched this job (describe's parentJobTry; dx draws trees by it).
    parent_try = models.PositiveSmallIntegerField(null=True)
    origin = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="origin_tree")
    root = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="root_tree")
    launched_by = models.ForeignKey(User, on_delete=models.CASCADE, related_name="launched_jobs")
    # Launched with a job's token: that token's scopes ({container id: level}), the most this job's
    # token may hold (projects.permissions.job_scopes). None: launched by a user.
    launcher_scopes = models.JSONField(null=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.IDLE)
    input = models.JSONField(default=dict)
    original_input = models.JSONField(default=dict)
    run_input = models.JSONField(default=dict)
    output = models.JSONField(null=True)
    depends_on = models.JSONField(default=list)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    failure_message = models.TextField(blank=True, default="")
    failure_from = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")
    debug = models.JSONField(default=dict)
    allow_ssh = models.JSONField(default=list)
    host = models.CharField(max_length=255, blank=True, default="")
    ssh_port = models.PositiveIntegerField(null=True)
    ssh_host_key = models.TextField(blank=True, default="")
    instance_type = models.CharField(max_length=64, blank=True, default="")
    priority = models.CharField(max_length=10, default="normal")
    timeout_s = models.PositiveIntegerField(null=True)
    tags = models.JSONField(default=list)
    properties = models.JSONField(default=dict)
    details = models.JSONField(default=dict)
    delay_workspace_destruction = models.BooleanField(default=False)
    created = models.BigIntegerField(default=now_ms)
    modified = models.BigIntegerField(default=now_ms)
    started_running = models.BigIntegerField(null=True)
    stopped_running = models.BigIntegerField(null=True)
    # The worker lease: who runs it, and when it last said so.
    worker = models.CharField(max_length=255, blank=True, default="")
    heartbeat = models.BigIntegerField(null=True)
    tries = models.PositiveSmallIntegerField(default=0)
    token = models.ForeignKey(ApiToken, null=True, on_delete=models.SET_NULL, related_name="+")
    # A stage's job: the analysis it runs in, and the workflow stage it runs.
    analysis = models.ForeignKey("Analysis", null=True, on_delete=models.CASCADE, related_name="stage_jobs")
    stage = models.CharField(max_length=128, blank=True, default="")

    objects = JobQuerySet.as_manager()

    class Meta:
        indexes = [
            # The job lists (jobs.views): a page's ids come from these alone (every column the filters read),
            # in keyset order. On PostgreSQL `tags` is left out of both and has a GIN index instead (btree
            # entries are limited to ~2.7 kB; a job may carry 100 tags of 256 characters): see 0006.
            models.Index(
                fields=["project", "-created", "-id", "name", "tags", "state", "launched_by", "origin"],
                name="jobs_job_project_list_idx",
            ),
            models.Index(
                fields=["launched_by", "-created", "-id", "project", "name", "tags", "state", "origin"],
                name="jobs_job_launcher_list_idx",
            ),
            models.Index(fields=["state"]),
            # Claims (jobs/scheduler.py): the runnable jobs of one launcher and priority, oldest first.
            models.Index(fields=["state", "launched_by", "priority", "created"], name="jobs_job_claim_idx"),
        ]

    def __str__(self):
        return self.id

    @property
    def is_final(self):
        return self.state in FINAL_STATES


class WorkerHost(models.Model):
    """A worker host: its capacity, which its jobs' instance types share, and when it was last heard
    of (jobs/scheduler.py). Its lanes claim one at a time under a lock in its data directory
    (scheduler.claiming), not on this row, which only the host's beat renews."""

    name = models.CharField(max_length=255, primary_key=True)
    cores = models.PositiveIntegerField()
    memory_mb = models.PositiveIntegerField()
    lanes = models.PositiveIntegerField(default=0)
    ssh_host = models.CharField(max_length=255, blank=True, default="")
    started = models.BigIntegerField(default=now_ms)
    heartbeat = models.BigIntegerField(default=now_ms)

    def __str__(self):
        return self.name


class LauncherShare(models.Model):
    """When a launcher's job was last claimed: between launchers with as many jobs running, claims go
    to the one served longest ago (jobs/scheduler.py), so that they take turns."""

    user = models.OneToOneField(User, primary_key=True, on_delete=models.CASCADE, related_name="launcher_share")
    last_claim = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.user_id}: {self.last_claim}"


class JobTransition(models.Model):
    """One row per state change: the job's stateTransitions and an audit log."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="transitions")
    old_state = models.CharField(max_length=20)
    new_state = models.CharField(max_length=20)
    set_at = models.BigIntegerField(default=now_ms)

    class Meta:
        ordering = ["pk"]


class JobDependency(models.Model):
    """`job` cannot run (or finish) until `on` is done: a JBOR in its input or output, or dependsOn."""

    INPUT = "input"
    OUTPUT = "output"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependencies")
    on = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependants")
    stage = models.CharField(max_length=6, default=INPUT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "on", "stage"], name="one_dependency_per_pair")]


class AnalysisState(models.TextChoices):
    IN_PROGRESS = "in_progress"
    PARTIALLY_FAILED = "partially_failed"
    DONE = "done"
    FAILED = "failed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


ANALYSIS_FINAL_STATES = frozenset({AnalysisState.DONE, AnalysisState.FAILED, AnalysisState.TERMINATED})
# Every analysis state change goes through jobs.workflows.analyses.move(), which allows only these.
ANALYSIS_TRANSITIONS = {
    AnalysisState.IN_PROGRESS: {
        AnalysisState.PARTIALLY_FAILED,
        AnalysisState.DONE,
        AnalysisState.FAILED,
        AnalysisState.TERMINATING,
        AnalysisState.TERMINATED,
    },
    AnalysisState.PARTIALLY_FAILED: {AnalysisState.FAILED, AnalysisState.TERMINATING, AnalysisState.TERMINATED},
    AnalysisState.TERMINATING: {AnalysisState.TERMINATED},
    AnalysisState.DONE: set(),
    AnalysisState.FAILED: set(),
    AnalysisState.TERMINATED: set(),
}


class Analysis(models.Model):
    """A run of a workflow: one job per stage (Job.analysis), started in the order their links ask."""

    id = models.CharField(primary_key=True, max_length=40)
    name = models.CharField(max_length=255)
    workflow = models.ForeignKey(DataObject, null=True, on_delete=models.SET_NULL, related_name="+")
    # The workflow's ID, name and stages at launch (each stage with its "execution": the job's ID).
    executable = models.CharField(max_length=40)
    executable_name = models.CharField(max_length=255, blank=True, default="")
    stages = models.JSONField(default=list)
    project = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="analyses")
    folder = models.CharField(max_length=1024, default="/")
    launched_by = models.ForeignKey(User, on_delete=models.CASCADE, related_name="launched_analyses")
    state = models.CharField(max_length=20, choices=AnalysisState.choices, default=AnalysisState.IN_PROGRESS)
    # Keyed "<stage ID>.<field>": every stage's input (bound and given), what the run named, and the
    # outputs of the stages done so far (None until the first).
    input = models.JSONField(default=dict)
    original_input = models.JSONField(default=dict)
    run_input = models.JSONField(default=dict)
    output = models.JSONField(null=True)
    depends_on = models.JSONField(default=list)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    failure_message = models.TextField(blank=True, default="")
    failure_from = models.ForeignKey(Job, null=True, on_delete=models.SET_NULL, related_name="+")
    priority = models.CharField(max_length=10, default="normal")
    tags = models.JSONField(default=list)
    properties = models.JSONField(default=dict)
    details = models.JSONField(default=dict)
    # [{"newState", "setAt"}], the analysis's stateTransitions.
    transitions = models.JSONField(default=list)
    created = models.BigIntegerField(default=now_ms)
    modified = models.BigIntegerField(default=now_ms)

    objects = AnalysisQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["project", "-created", "-id"], name="jobs_analysis_project_idx"),
            models.Index(fields=["launched_by", "-created", "-id"], name="jobs_analysis_launcher_idx"),
        ]

    def __str__(self):
        return self.id

    @property
    def is_final(self):
        return self.state in ANALYSIS_FINAL_STATES


def root_execution(job):
    """The ID of the execution at the root of the job's tree: its analysis for a stage's job and
    the jobs that job launched, else the root job."""
    if job.analysis_id:
        return job.analysis_id
    if job.root_id and job.root_id != job.pk:
        if Job.root.is_cached(job):
            return job.root.analysis_id or job.root_id
        if hasattr(job, "root_analysis_id"):  # read with the job (jobs.permissions.load_job)
            return job.root_analysis_id or job.root_id
        # Not the whole root: a scatter's root holds a reference to each of its thousands of subjobs.
        return Job.objects.filter(pk=job.root_id).values_list("analysis_id", flat=True).first() or job.root_id
    return job.pk


def describe_job(job, io=True):
    """The fields /job-x/describe returns (reference §5)."""
    data = {
        "id": job.id,
        "class": "job",
        "name": job.name,
        "executable": job.executable,
        "executableName": job.executable_name,
        # An app's job names its app version instead (dx run --clone reads "applet", else "app").
        ("app" if job.executable.startswith("app-") else "applet"): job.executable,
        "function": job.function,
        "state": job.state,
        "project": job.project_id,
        "folder": job.folder,
        "parentJob": job.parent_id,
        "parentJobTry": job.parent_try if job.parent_id else None,
        "originJob": job.origin_id or job.id,
        "rootExecution": root_execution(job),
        "parentAnalysis": job.analysis_id,
        "analysis": job.analysis_id,
        "launchedBy": job.launched_by.dx_id,
        "created": job.created,
        "modified": job.modified,
        "stateTransitions": [{"newState": t.new_state, "setAt": t.set_at} for t in job.transitions.all()],
        "dependsOn": job.depends_on,
        "tags": job.tags,
        "properties": job.properties,
        "details": job.details,
        "priority": job.priority,
        "instanceType": job.instance_type,
        "systemRequirements": {job.function: {"instanceType": job.instance_type}},
        # What `dx describe --verbose` asks for besides: the requirements as run and merged per executable.
        "runSystemRequirements": {job.function: {"instanceType": job.instance_type}},
        "mergedSystemRequirementsByExecutable": {job.executable: {job.function: {"instanceType": job.instance_type}}},
        "internetUsageIPs": [],
        "timeout": job.timeout_s * 1000 if job.timeout_s else None,
        "debug": job.debug,
        "allowSSH": job.allow_ssh,
        "delayWorkspaceDestruction": job.delay_workspace_destruction,
        "try": max(job.tries - 1, 0),
        "host": job.host or None,
        "sshPort": job.ssh_port,
        "sshHostKey": job.ssh_host_key or None,
        "region": job.project.region,
        "billTo": job.project.bill_to,
        "isFree": True,
    }
    if job.workspace_id:  # absent once destroyed: `dx describe` prints it and cannot print a null
        data["workspace"] = job.workspace_id
    if job.analysis_id:
        data["stage"] = job.stage
    if io:
        data.update(input=job.input, originalInput=job.original_input, runInput=job.run_input, output=job.output)
    if job.started_running is not None:
        data["startedRunning"] = job.started_running
    if job.stopped_running is not None:
        data["stoppedRunning"] = job.stopped_running
    if job.state == State.FAILED or job.failure_reason:
        data["failureReason"] = job.failure_reason
        data["failureMessage"] = job.failure_message
        if job.failure_from_id:
            data["failureFrom"] = {"id": job.failure_from_id, "name": job.failure_from.name}
    return data


class LogLine(models.Model):
    """One line of a job's log. The store is the truth; websocket streams are views of it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    timestamp = models.BigIntegerField()
    source = models.CharField(max_length=16, default="APP")
    level = models.CharField(max_length=10)
    msg = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="one_line_per_seq")]
        ordering = ["job", "seq"]

    def to_frame(self, job_name=None):
        """The JSON frame `dx watch` prints (reference §6)."""
        return {
            "job": self.job_id,
            "timestamp": self.timestamp,
            "source": self.source,
            "level": self.level,
            "line": self.seq,
            "msg": self.msg,
            **({"jobName": job_name} if job_name else {}),
        }


class SSHSession(models.Model):
    """An audit record of one SSH session into a job: who, when, from where, how long."""

    SSH = "ssh"
    BROWSER = "browser"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="ssh_sessions")
    user = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    via = models.CharField(max_length=10, choices=[(SSH, "SSH client"), (BROWSER, "browser terminal")])
    client_ip = models.CharField(max_length=64, blank=True, default="")
    started = models.BigIntegerField(default=now_ms)
    ended = models.BigIntegerField(null=True)
    detail = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-started"]

    @property
    def seconds(self):
        return None if self.ended is None else round((self.ended - self.started) / 1000)


class Notification(models.Model):
    """A notice to a user that a job they launched has ended."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=20)
    message = models.CharField(max_length=500)
    created = models.BigIntegerField(default=now_ms)
    read = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["user", "read", "-created"])]


class ResourceSample(models.Model):
    """What a running job used at one moment, from its cgroup (jobs/execution/sampler.py): the CPU
    cores it kept busy since the sample before, its memory and its disk. None where the worker could
    not measure it."""

    # Indexed by (job, at) below, which serves the job's own lookups too.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="resource_samples", db_index=False)
    at = models.BigIntegerField()  # ms since the epoch
    cpu = models.FloatField(null=True)  # cores used
    memory_mb = models.FloatField(null=True)
    disk_mb = models.FloatField(null=True)

    class Meta:
        ordering = ["job", "at"]
        indexes = [models.Index(fields=["job", "at"], name="jobs_resource_job_at_idx")]


# Apps ---------------------------------------------------------------------------------------------
# An app is a name in one global namespace, owned by its developers, with many versions. Each version
# is its own `app-<24>` executable: a frozen copy of the applet it was built from (its specs, and the
# applet object itself with its resources bundle, kept in the version's own resources container, so
# that the project it was built in may be destroyed). Authorized users (users, orgs, PUBLIC) may find
# and run its published versions; unpublished ones are its developers' alone (jobs.permissions).

# DNAnexus versions are semver-like: MAJOR.MINOR.PATCH, an optional -prerelease and +build.
APP_VERSION_RE = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
APP_NAME_RE = r"^[a-zA-Z0-9._-]{1,128}$"
PUBLIC = "PUBLIC"


class App(models.Model):
    """An app name: claimed by its first developer, shared by every version."""

    name = models.CharField(max_length=128, unique=True)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.BigIntegerField(default=now_ms)
    # Shared by all versions, as on DNAnexus.
    categories = models.JSONField(default=list)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class AppDeveloper(models.Model):
    """A developer of an app name: a user or an org (whose members all are)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="developers")
    user = models.ForeignKey(User, null=True, on_delete=models.CASCADE, related_name="+")
    org = models.ForeignKey("projects.Org", null=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "user"], name="one_developer_row_per_user"),
            models.UniqueConstraint(fields=["app", "org"], name="one_developer_row_per_org"),
        ]

    @property
    def principal_id(self):
        return self.user.dx_id if self.user_id else self.org_id


class AppAuthorization(models.Model):
    """Who may find and run the app's published versions: a user, an org's members, or everyone."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="authorizations")
    user = models.ForeignKey(User, null=True, on_delete=models.CASCADE, related_name="+")
    org = models.ForeignKey("projects.Org", null=True, on_delete=models.CASCADE, related_name="+")
    public = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "user"], name="one_authorization_per_user"),
            models.UniqueConstraint(fields=["app", "org"], name="one_authorization_per_org"),
        ]

    @property
    def principal_id(self):
        if self.public:
            return PUBLIC
        return self.user.dx_id if self.user_id else self.org_id


class AppVersion(models.Model):
    """One version of an app: its own `app-<24>` ID, immutable once published."""

    id = models.CharField(primary_key=True, max_length=40)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=128)
    # Aliases besides the version itself ("default" on at most one version of an app).
    tags = models.JSONField(default=list)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.BigIntegerField(default=now_ms)
    modified = models.BigIntegerField(default=now_ms)
    published = models.BigIntegerField(null=True)
    deleted = models.BooleanField(default=False)
    # The applet it was built from (its ID), and the frozen copy: its specs (inputSpec, outputSpec,
    # runSpec with the code, access, dxapi...) and the applet object, kept in `resources`.
    source_applet = models.CharField(max_length=40, blank=True, default="")
    applet = models.ForeignKey(DataObject, null=True, on_delete=models.SET_NULL, related_name="+")
    spec = models.JSONField(default=dict)
    # The version's own container: the applet, its resources bundle and any extra resources.
    resources = models.ForeignKey(Container, null=True, on_delete=models.SET_NULL, related_name="+")
    title = models.CharField(max_length=255, blank=True, default="")
    summary = models.CharField(max_length=1024, blank=True, default="")
    description = models.TextField(blank=True, default="")
    developer_notes = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict)
    bill_to = models.CharField(max_length=80, blank=True, default="")
    open_source = models.BooleanField(default=False)
    region = models.CharField(max_length=64, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "version"], name="one_row_per_app_version")]
        indexes = [models.Index(fields=["app", "-created"], name="jobs_appversion_app_idx")]

    def __str__(self):
        return self.id

    @property
    def aliases(self):
        return [self.version, *self.tags]

    @property
    def name(self):
        """The app's name (shared by its versions)."""
        return self.app.name


class AppInstall(models.Model):
    """A user's bookmark of an app name (`dx install`)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="installs")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="apps_installed")
    version = models.ForeignKey(AppVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.BigIntegerField(default=now_ms)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "user"], name="one_install_per_user")]
