"""What a job's sandbox is made of (SandboxSpec, Bind) and the settings that choose it."""

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.conf import settings

from . import host

HOME = "/home/dnanexus"
MODES = ("bubblewrap", "none")
DEFAULT_PIDS_MAX = 4096
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SandboxError(RuntimeError):
    """The platform could not start a sandbox (the job's code never ran)."""


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox at `target`."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class SandboxSpec:
    """What one job's sandbox looks like and may use.

    `network=False`: a private network in which only `api` (host, port) is reachable, relayed
    (bubblewrap mode only; see network.py).
    """

    job_id: str
    home: Path
    env: dict
    binds: list = field(default_factory=list)
    cpus: int | None = None
    memory_mb: int | None = None
    network: bool = True
    workdir: Path | None = None
    pids_max: int | None = DEFAULT_PIDS_MAX
    api: tuple | None = None
    disk_mb: int | None = None

    def layer_dir(self):
        """Return the host directory for the sandbox's own state (the root layer)."""
        if self.workdir is not None:
            return Path(self.workdir)
        home = Path(self.home)
        return home.parent / f"{home.name}.sandbox"


def instance_types():
    """Return the instance-type table: name -> {"cpus", "memory_mb"} (settings.DXWEB_INSTANCE_TYPES)."""
    return settings.DXWEB_INSTANCE_TYPES


def instance_limits(name=None):
    """Return {"cpus", "memory_mb", "disk_mb"} for an instance type (None: the default type).

    A table entry without `disk_mb` gets settings.DXWEB_DEFAULT_DISK_MB."""
    table = instance_types()
    name = name or settings.DXWEB_DEFAULT_INSTANCE_TYPE
    if name not in table:
        raise KeyError(f"Unknown instance type {name!r}; available: {', '.join(sorted(table))}")
    entry = table[name]
    return {
        "cpus": int(entry["cpus"]),
        "memory_mb": int(entry["memory_mb"]),
        "disk_mb": int(entry.get("disk_mb") or settings.DXWEB_DEFAULT_DISK_MB),
    }


def fit_to_host(spec, host_cpus=None, host_memory_mb=None):
    """Return the spec with no more CPUs and memory than this worker has, and a sentence saying what
    was cut (None when nothing was). The host's figures default to this worker host's capacity: this
    machine's, unless DXWEB_WORKER_CORES / DXWEB_WORKER_MEMORY_MB say otherwise (jobs/scheduler.py)."""
    if host_cpus is None:
        host_cpus = settings.DXWEB_WORKER_CORES or host.cpu_count()
    if host_memory_mb is None:
        host_memory_mb = settings.DXWEB_WORKER_MEMORY_MB or host.memory_mb()
    cpus = min(spec.cpus, host_cpus) if spec.cpus and host_cpus else spec.cpus
    memory_mb = min(spec.memory_mb, host_memory_mb) if spec.memory_mb and host_memory_mb else spec.memory_mb
    cut = []  # (asked, given)
    if cpus != spec.cpus:
        cut.append((f"{spec.cpus} CPUs", f"{cpus} CPUs"))
    if memory_mb != spec.memory_mb:
        cut.append((f"{spec.memory_mb} MB of memory", f"{memory_mb} MB"))
    if not cut:
        return spec, None
    note = (
        f"The instance type asks for {' and '.join(asked for asked, _ in cut)}; this worker has "
        f"{' and '.join(given for _, given in cut)}: the job runs with that"
    )
    return replace(spec, cpus=cpus, memory_mb=memory_mb), note


def isolation():
    """Return the configured sandbox mode: "bubblewrap" or "none" (settings.DXWEB_SANDBOX)."""
    mode = getattr(settings, "DXWEB_SANDBOX", "bubblewrap")
    if mode not in MODES:
        raise SandboxError(f"DXWEB_SANDBOX must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def job_env(spec):
    return {str(k): str(v) for k, v in spec.env.items()}
