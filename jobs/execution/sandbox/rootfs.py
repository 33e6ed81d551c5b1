"""The job's root filesystem, built from an allowlist of the host, and bubblewrap's options."""

import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings

from . import host
from .spec import HOME, job_env

# Host files a root process could read that no job needs (the mount covers hide directories).
SECRET_FILES = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
)

# The job's root is built from an allowlist, never the host's `/`: the system (`/usr` and the
# top-level links or directories into it), a minimal `/etc`, the worker's Python, and the job's own
# directories. Nothing else of the host exists inside (home and work trees, /var/log, /srv, other
# mounts). See docs/sandbox.md.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What of the host's /etc a job sees (read-only): what programs and the C library read, nothing
# about the host's services, users' secrets or configuration.
ETC_ALLOWED = (
    "alternatives",
    "bash.bashrc",
    "bindresvport.blacklist",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "environment",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "inputrc",
    "issue",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "resolv.conf",
    "rpc",
    "services",
    "shells",
    "skel",
    "ssl",
    "terminfo",
    "timezone",
    "xattr.conf",
)
# Parts of the fresh /proc and of /sys a job has no business reading (masked: an empty directory or
# /dev/null) or writing (read-only), as container runtimes do.
PROC_MASKED = ("acpi", "asound", "kcore", "keys", "latency_stats", "sched_debug", "scsi", "timer_list", "timer_stats")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
SYS_MASKED = ("firmware", "kernel/debug", "kernel/security", "devices/virtual/powercap")

_overlay_ok = {}


def _overlay_works(bwrap, directory):
    """Tell whether `bwrap` can mount an overlay with its upper layer on `directory`'s filesystem.

    Probed once per bwrap and filesystem: bubblewrap before 0.10 has no --overlay, and overlayfs
    refuses an upper layer on NFS or on another overlay.
    """
    key = (bwrap, directory.stat().st_dev)
    if key not in _overlay_ok:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".overlay-probe-") as tmp:
            root, upper, work = (Path(tmp) / n for n in ("root", "upper", "work"))
            for d in (root, upper, work):
                d.mkdir()
            probe = ".dxweb-overlay-probe"
            command = [
                bwrap,
                "--bind",
                str(root),
                "/",
                *_system_links(),
                "--overlay-src",
                "/usr",
                "--overlay",
                str(upper),
                str(work),
                "/usr",
                "--",
                "/usr/bin/touch",
                f"/usr/{probe}",
            ]
            try:
                result = subprocess.run(command, env={"PATH": host.SYSTEM_PATH}, capture_output=True, timeout=30)
                detail = result.stderr.decode(errors="replace").strip()
                ok = result.returncode == 0 and (upper / probe).exists() and not Path("/usr", probe).exists()
            except (OSError, subprocess.SubprocessError) as err:
                ok, detail = False, str(err)
        if not ok:
            host.warn_once(
                f"overlay-{key}",
                "overlays do not work here (%s): jobs get a read-only /usr and Python, and a writable / of their own",
                detail,
            )
        _overlay_ok[key] = ok
    return _overlay_ok[key]


# Where a job writes much (temporary files, what an asset bundle or a package manager puts in /opt
# or /var), its root has directories of its layer on disk. The rest of `/` is a tmpfs of its own.
ON_DISK = {"/tmp": "tmp", "/var": "var", "/opt": "opt"}


def prepare_root(spec, bwrap):
    """Make the job's fresh root layer; return its description.

    The job's `/` is a tmpfs that bubblewrap mounts (memory, no disk: the mount points of its
    allowlist cost no inode on disk), holding `/tmp`, `/var` and `/opt` from the layer on disk
    (`ON_DISK`) and, in overlay mode, one upper and work directory per system directory shown, so
    that writes to `/usr` or the worker's Python land in the job's layer.
    """
    layer = spec.layer_dir()
    layer.mkdir(parents=True, exist_ok=True)
    for name in ("upper", "work", *ON_DISK.values()):
        shutil.rmtree(layer / name, ignore_errors=True)  # each launch starts from a clean root
    disk = {target: layer / name for target, name in ON_DISK.items()}
    for directory in disk.values():
        directory.mkdir()
    (disk["/var"] / "tmp").mkdir()
    for directory in (disk["/tmp"], disk["/var"] / "tmp"):
        directory.chmod(0o1777)
    shown = shown_system_paths()
    usable = not any(c in str(layer) for c in ",:\\")  # characters overlayfs options cannot carry
    overlays = {}
    if usable and _overlay_works(bwrap, layer):
        for index, path in enumerate(shown):
            upper, work = layer / "upper" / str(index), layer / "work" / str(index)
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            overlays[path] = (upper, work)
    return {"mode": "overlay" if overlays else "read-only", "disk": disk, "overlays": overlays}


def shown_system_paths():
    """Host directories shown to jobs as the system: /usr and what of /bin, /lib... is not a link
    into it, plus the worker's Python wherever it lives (a venv, pyenv), topmost ones only."""
    paths = [Path("/", name) for name in SYSTEM_DIRS if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}")]
    for p in _interpreter_paths():
        if not any(host.within(p, q) for q in paths):
            paths.append(p)
    return paths


def _system_links():
    """bubblewrap options that make /bin, /lib64... the links into /usr that they are on the host."""
    a = []
    for name in SYSTEM_DIRS:
        if os.path.islink(f"/{name}"):
            a += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
    return a


def bwrap_options(spec, root):
    """Return bubblewrap's options (passed through --args so they never show in a process list)."""
    # The root is a tmpfs as large as the job's memory (its pages count against the job's memory).
    size = ["--size", str(int(spec.memory_mb) * 1024 * 1024)] if spec.memory_mb else []
    a = [*size, "--tmpfs", "/", *_system_links()]
    # /tmp, /var and /opt are the job's own, on disk in its layer (counted against its disk limit);
    # first, so that a system directory shown inside one (a venv under /opt or /tmp) stays in view.
    for target, source in root["disk"].items():
        a += ["--bind", str(source), target]
    shown = shown_system_paths()
    for path in shown:
        if path in root["overlays"]:
            upper, work = root["overlays"][path]
            a += ["--overlay-src", str(path), "--overlay", str(upper), str(work), str(path)]
        else:
            a += ["--ro-bind", str(path), str(path)]
    a += ["--dir", "/etc"]
    for name in ETC_ALLOWED:
        a += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in SECRET_FILES:  # in case a shown directory ever holds them
        if os.path.isfile(path) and any(host.within(Path(path), p) for p in shown):
            a += ["--ro-bind", "/dev/null", path]
    # A fresh /proc for the job's pid namespace, with the kernel's settings read-only; /sys read-only.
    a += ["--proc", "/proc"]
    for name in PROC_READ_ONLY:
        a += ["--ro-bind-try", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_MASKED:
        if os.path.isdir(f"/proc/{name}"):
            a += ["--tmpfs", f"/proc/{name}", "--remount-ro", f"/proc/{name}"]
        elif os.path.exists(f"/proc/{name}"):
            a += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    a += ["--ro-bind", "/sys", "/sys"]
    for name in SYS_MASKED:
        if os.path.isdir(f"/sys/{name}"):
            a += ["--tmpfs", f"/sys/{name}", "--remount-ro", f"/sys/{name}"]
    a += ["--dev", "/dev", "--tmpfs", "/run"]
    a += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]  # DNS on systemd-resolved hosts
    a += ["--dir", "/home"]
    # A hidden path the shown directories hold (the data directory inside the venv, say) stays hidden.
    layer = spec.layer_dir().resolve()
    for path in [*_hidden_paths(), layer]:
        if any(host.within(path, p) for p in shown):
            a += ["--tmpfs", str(path)]
    a += ["--bind", str(Path(spec.home).resolve()), HOME]
    for bind in spec.binds:
        a += ["--bind" if bind.writable else "--ro-bind", str(Path(bind.source).resolve()), bind.target]
    a += [
        "--chdir",
        HOME,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        spec.job_id[:64],
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    for key, value in job_env(spec).items():
        a += ["--setenv", key, value]
    return a


def _hidden_paths():
    """Host directories no job may see: the data, blob and jobs directories, the worker's home, and
    DXWEB_SANDBOX_HIDE. They are outside the job's root anyway unless a shown directory holds them."""
    try:
        worker_home = Path.home()
    except RuntimeError:
        worker_home = None
    paths = [
        settings.DATA_DIR,
        getattr(settings, "MEDIA_ROOT", None),
        getattr(settings, "DXWEB_JOBS_DIR", None),
        worker_home,
        *getattr(settings, "DXWEB_SANDBOX_HIDE", []),
    ]
    result = []
    for p in paths:
        if not p:
            continue
        p = Path(p).resolve()
        if p != Path("/") and p.is_dir() and p not in result:
            result.append(p)
    # A path inside another hidden one is already covered.
    return [p for p in result if not any(q != p and host.within(p, q) for q in result)]


@cache
def _interpreter_paths():
    """Host directories the job's Python needs: the worker's venv and the Python it was made from
    (resolved once per process: every launch asks, twice)."""
    paths = []
    for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        p = Path(p).resolve()
        if p != Path("/") and p not in paths:
            paths.append(p)
    return tuple(p for p in paths if not any(q != p and host.within(p, q) for q in paths))
