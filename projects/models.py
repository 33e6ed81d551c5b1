"""Users, orgs, containers (projects and workspaces), grants, folders and data objects."""

import hashlib
import secrets
import time

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q

from dxweb import sql


def now_ms():
    return int(time.time() * 1000)


class Level(models.IntegerChoices):
    NONE = 0, "NONE"
    VIEW = 1, "VIEW"
    UPLOAD = 2, "UPLOAD"
    CONTRIBUTE = 3, "CONTRIBUTE"
    ADMINISTER = 4, "ADMINISTER"

    @classmethod
    def parse(cls, name):
        """Return the level called `name` (VIEW...ADMINISTER), or None."""
        if isinstance(name, str) and name in cls.names and name != "NONE":
            return cls[name]
        return None


def permitted_regions():
    """The regions a user or org may use: every region this deployment has."""
    return list(settings.DXWEB_REGIONS)


class User(AbstractUser):
    # Kept byte for byte: `dx ssh` compares it with the local key file.
    ssh_public_key = models.TextField(blank=True, default="")
    # When a job the user launched ends: a notice in the app, an email (to `email`, when set).
    notify_in_app = models.BooleanField(default=True)
    notify_by_email = models.BooleanField(default=True)

    @property
    def dx_id(self):
        return f"user-{self.username}"

    def describe(self, full=True):
        data = {"id": self.dx_id, "class": "user", "handle": self.username}
        if full:
            data.update(
                first=self.first_name,
                last=self.last_name,
                email=self.email,
                created=int(self.date_joined.timestamp() * 1000),
                sshPublicKey=self.ssh_public_key or None,
                # `dx get` of an applet asks the billTo's permittedRegions (a user bills to themself).
                billTo=self.dx_id,
                permittedRegions=permitted_regions(),
            )
        return data


class ApiToken(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100)
    # Only the SHA-256 of a token is stored; the token itself is shown once.
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    # A job token: {container id: level} it is limited to, and the job it belongs to.
    # A user's own tokens have no scopes and act with all the user's grants.
    scopes = models.JSONField(null=True, blank=True)
    job_id = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @staticmethod
    def digest_of(raw):
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name="API token", raw=None, **fields):
        """Create a token for `user` (a job's: with `scopes` and `job_id`); return (token row, the raw secret)."""
        raw = raw or secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name[:100], digest=cls.digest_of(raw), hint=raw[:6], **fields)
        return token, raw


class Org(models.Model):
    id = models.CharField(primary_key=True, max_length=80)
    handle = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    created = models.BigIntegerField(default=now_ms)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["handle"]

    def __str__(self):
        return self.id

    def describe(self):
        return {
            "id": self.id,
            "class": "org",
            "handle": self.handle,
            "name": self.name,
            "created": self.created,
            "permittedRegions": permitted_regions(),
        }


class OrgMember(models.Model):
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    LEVELS = [(ADMIN, ADMIN), (MEMBER, MEMBER)]

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="org_memberships")
    level = models.CharField(max_length=6, choices=LEVELS, default=MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="one_membership_per_org")]


def default_region():
    """The deployment's region (settings.DXWEB_REGION): a project's unless /project/new names another."""
    return settings.DXWEB_REGION


class Container(models.Model):
    PROJECT = "project"
    WORKSPACE = "container"

    id = models.CharField(primary_key=True, max_length=40)
    kind = models.CharField(max_length=10, choices=[(PROJECT, "project"), (WORKSPACE, "container")])
    name = models.CharField(max_length=255)
    summary = models.CharField(max_length=1024, blank=True, default="")
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list)
    properties = models.JSONField(default=dict)
    region = models.CharField(max_length=64, default=default_region)
    # The booleans `dx update project` sets (PROJECT_FLAGS), {name: bool}; absent ones are false.
    flags = models.JSONField(default=dict)
    bill_to = models.CharField(max_length=80, blank=True, default="")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.BigIntegerField(default=now_ms)
    modified = models.BigIntegerField(default=now_ms)

    class Meta:
        indexes = [models.Index(fields=["kind", "name"])]

    def __str__(self):
        return self.id

    @property
    def is_project(self):
        return self.kind == self.PROJECT


class Folder(models.Model):
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="folders")
    path = models.CharField(max_length=1024)
    parent = models.CharField(max_length=1024, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["container", "path"], name="one_folder_per_path")]
        indexes = [models.Index(fields=["container", "parent"])]

    def __str__(self):
        return f"{self.container_id}:{self.path}"

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1] or "/"


class Grant(models.Model):
    """A user's or an org's level on a container."""

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    org = models.ForeignKey(Org, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    level = models.PositiveSmallIntegerField(choices=Level.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["container", "user"], name="one_grant_per_user"),
            models.UniqueConstraint(fields=["container", "org"], name="one_grant_per_org"),
            models.CheckConstraint(
                condition=(Q(user__isnull=False, org__isnull=True) | Q(user__isnull=True, org__isnull=False)),
                name="grant_to_user_or_org",
            ),
        ]

    @property
    def grantee_id(self):
        return self.user.dx_id if self.user_id else self.org_id


class DataObject(models.Model):
    """The content of a file, applet, record...; it may be placed in several containers."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"

    id = models.CharField(primary_key=True, max_length=40)
    cls = models.CharField(max_length=16)
    state = models.CharField(max_length=8, default=OPEN)
    types = models.JSONField(default=list)
    details = models.JSONField(default=dict)
    # Class-specific content, e.g. an applet's inputSpec, outputSpec, runSpec, access.
    spec = models.JSONField(default=dict)
    size = models.BigIntegerField(default=0)
    media = models.CharField(max_length=255, blank=True, default="")
    created = models.BigIntegerField(default=now_ms)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    # The job whose token created the object ("" when a user's own token or a page did).
    created_by_job = models.CharField(max_length=40, blank=True, default="")

    def __str__(self):
        return self.id


class Placement(models.Model):
    """A data object as it appears in one container: folder, name and per-project metadata."""

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="placements")
    obj = models.ForeignKey(DataObject, on_delete=models.CASCADE, related_name="placements")
    folder = models.CharField(max_length=1024, default="/")
    name = models.CharField(max_length=255)
    hidden = models.BooleanField(default=False)
    tags = models.JSONField(default=list)
    properties = models.JSONField(default=dict)
    modified = models.BigIntegerField(default=now_ms)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["container", "obj"], name="one_placement_per_container")]
        indexes = [models.Index(fields=["container", "folder", "name"])]

    def __str__(self):
        return f"{self.container_id}:{self.obj_id}"


class FilePart(models.Model):
    PENDING = "pending"
    COMPLETE = "complete"

    file = models.ForeignKey(DataObject, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField()
    size = models.BigIntegerField(null=True)
    md5 = models.CharField(max_length=32, blank=True, default="")
    state = models.CharField(max_length=8, default=PENDING)
    blob = models.CharField(max_length=255, blank=True, default="")
    # Byte offset of the part in the closed file.
    offset = models.BigIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file", "index"], name="one_part_per_index")]
        ordering = ["index"]


class Nonce(models.Model):
    """The reply to a /new or /run call, kept so that a retried call gets the same reply."""

    principal = models.CharField(max_length=80)
    nonce = models.CharField(max_length=128)
    route = models.CharField(max_length=120)
    # SHA-256 of the call's input: a nonce reused with another input is refused ("" on old rows).
    input_digest = models.CharField(max_length=64, blank=True, default="")
    response = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "nonce"], name="one_reply_per_nonce")]


def select_fields(data, body):
    """Apply describe's `fields`/`defaultFields` input: only asked-for fields (and id) unless defaults too."""
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict) or body.get("defaultFields"):
        return data
    keep = {k for k, v in fields.items() if v} | {"id"}
    return {k: v for k, v in data.items() if k in keep}


def upload_parameters():
    return {
        "minimumPartSize": settings.DXWEB_MIN_PART_SIZE,
        "maximumPartSize": settings.DXWEB_MAX_PART_SIZE,
        "maximumFileSize": settings.DXWEB_MAX_FILE_SIZE,
        "maximumNumParts": settings.DXWEB_MAX_PARTS,
        "emptyLastPartAllowed": True,
    }


def container_data_bytes(container_id):
    """The total size of the files in a container (SQL: it is part of every project describe, dxweb/sql.py)."""
    placement, obj = sql.name(Placement), sql.name(DataObject)
    rows = sql.fetch(
        f"SELECT SUM(o.{sql.name(DataObject, 'size')}) FROM {placement} p "
        f"INNER JOIN {obj} o ON o.{sql.name(DataObject, 'id')} = p.{sql.name(Placement, 'obj')} "
        f"WHERE p.{sql.name(Placement, 'container')} = %s AND o.{sql.name(DataObject, 'cls')} = %s",
        [container_id, "file"],
    )
    return int(rows[0][0] or 0)  # PostgreSQL sums a bigint column as numeric (a Decimal)


def container_permissions(container_id):
    """{grantee id: level name} for every grant on a container (SQL, as container_data_bytes)."""
    grant, user = sql.name(Grant), sql.name(User)
    rows = sql.fetch(
        f"SELECT u.{sql.name(User, 'username')}, g.{sql.name(Grant, 'org')}, g.{sql.name(Grant, 'level')} "
        f"FROM {grant} g LEFT OUTER JOIN {user} u ON u.{sql.name(User, 'id')} = g.{sql.name(Grant, 'user')} "
        f"WHERE g.{sql.name(Grant, 'container')} = %s",
        [container_id],
    )
    # Grant.grantee_id: a user's dx_id, or the org's id.
    return {
        (f"user-{username}" if username is not None else org_id): Level(level).label for username, org_id, level in rows
    }


# Project settings that /project-x/update takes (ADMINISTER) and describe returns, all false at first.
PROJECT_FLAGS = (
    "protected",
    "restricted",
    "downloadRestricted",
    "previewViewerRestricted",
    "containsPHI",
    "databaseUIViewOnly",
    "externalUploadRestricted",
    "httpsAppIsolatedBrowsing",
)


def describe_container(container, level, folders=False, permissions=True):
    """The fields /project-x/describe returns."""
    data_bytes = container_data_bytes(container.pk)
    data = {
        "id": container.pk,
        "class": container.kind,
        "name": container.name,
        "summary": container.summary,
        "description": container.description,
        "region": container.region,
        "billTo": container.bill_to,
        "level": Level(level).label,
        "created": container.created,
        "modified": container.modified,
        "createdBy": {"user": container.created_by.dx_id if container.created_by else None},
        "dataUsage": round(data_bytes / 1e9, 6),
        "tags": container.tags,
        "properties": container.properties,
        **{flag: bool(container.flags.get(flag, False)) for flag in PROJECT_FLAGS},
        "version": 0,
        "fileUploadParameters": upload_parameters(),
    }
    if permissions:
        data["permissions"] = container_permissions(container.pk)
    if folders:
        data["folders"] = list(container.folders.order_by("path").values_list("path", flat=True))
    return data


# Classes whose describe adds fields worked out from other objects, {class: fn(placement, data)}: the
# jobs app registers "workflow" (a workflow's inputSpec comes from its stages' applets).
DESCRIBERS = {}


def describe_placement(placement, parts=False):
    """The fields /<object>/describe returns for an object as seen in one container."""
    obj = placement.obj
    data = {
        "id": obj.pk,
        "class": obj.cls,
        "project": placement.container_id,
        "folder": placement.folder,
        "name": placement.name,
        "state": obj.state,
        "hidden": placement.hidden,
        "types": obj.types,
        "tags": placement.tags,
        "properties": placement.properties,
        "details": obj.details,
        "links": [],
        "sponsored": False,
        "archivalState": "live",
        "created": obj.created,
        "modified": max(placement.modified, obj.created),
        "createdBy": {"user": obj.created_by.dx_id if obj.created_by else None},
    }
    if obj.created_by_job:
        data["createdBy"]["job"] = obj.created_by_job
    if obj.cls == "file":
        data["size"] = obj.size
        data["media"] = obj.media or "application/octet-stream"
        if parts:
            data["parts"] = {str(p.index): {"size": p.size, "md5": p.md5, "state": p.state} for p in obj.parts.all()}
    data.update(obj.spec)
    if obj.cls in DESCRIBERS:
        DESCRIBERS[obj.cls](placement, data)
    return data
