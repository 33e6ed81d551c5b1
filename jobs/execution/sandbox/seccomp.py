"""The system calls a job may not make: a seccomp filter for the sandbox (docs/sandbox.md).

A job runs as uid 0 without capabilities, so most of what is denied here would fail anyway; the
filter is the second wall, and it shuts what capabilities do not: creating user namespaces (which
hand a process every capability inside them, and so the kernel's whole namespace surface), the
kernel keyring, BPF, perf events, io_uring, userfaultfd, and file handles. Denied calls fail with
EPERM, as under a capability check, so programs see an ordinary error; `clone3` fails with ENOSYS,
which makes the C library fall back to `clone`, whose flags the filter can read.

The program is classic BPF (struct sock_filter), built here for x86_64 and aarch64; a call of
another ABI (32-bit x86, x32) is refused outright. bubblewrap installs it (`--seccomp FD`) just
before it runs the job, and `exec_prefix()` installs it in processes entered into a running
sandbox (an SSH session's shell).
"""

import errno
import platform
import struct
import sys

# struct sock_filter opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
LD_W_ABS = 0x20
JEQ_K, JGE_K, JSET_K = 0x15, 0x35, 0x45
RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
# struct seccomp_data: nr, arch, instruction_pointer, args[6] (each 64 bits; the low half first).
NR, ARCH, ARG0, ARG1 = 0, 4, 16, 24

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Namespace flags of clone/unshare. CLONE_NEWTIME (0x80) is only read by unshare: in clone's flags
# the low byte is the exit signal.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x80
CLONE_NAMESPACES = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # push input into a terminal; the console's own controls

# name -> (x86_64 number, aarch64 number or None where the call does not exist).
SYSCALLS = {
    # The kernel keyring (shared by everything on the host that uses it).
    "add_key": (248, 217),
    "keyctl": (250, 219),
    "request_key": (249, 218),
    # BPF programs, perf events, io_uring, userfaultfd: large kernel surfaces no job needs.
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    # Kernel modules and kexec.
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    # Namespaces and mounts.
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # File handles (open_by_handle_at reaches files outside the sandbox's root).
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    # The machine's clock, swap, accounting, quotas, kernel log, reboot.
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "adjtimex": (159, 171),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "syslog": (103, 116),
    "reboot": (169, 142),
    "lookup_dcookie": (212, 18),
    "fanotify_init": (300, 262),
    "nfsservctl": (180, 42),
    # x86 only: port I/O, old system calls.
    "iopl": (172, None),
    "ioperm": (173, None),
    "uselib": (134, None),
    "_sysctl": (156, None),
    # Inspected below rather than denied by number.
    "clone": (56, 220),
    "clone3": (435, 435),
    "unshare": (272, 97),
    "ioctl": (16, 29),
}
INSPECTED = ("clone", "clone3", "unshare", "ioctl")
DENIED = tuple(name for name in SYSCALLS if name not in INSPECTED)


class Unsupported(RuntimeError):
    """No filter is known for this machine's architecture."""


def machine():
    return platform.machine()


def _number(name, arch):
    return SYSCALLS[name][0 if arch == "x86_64" else 1]


def program(arch=None):
    """Return the filter as bytes (an array of struct sock_filter) for `arch` (default: this machine's)."""
    arch = arch or machine()
    if arch not in AUDIT_ARCH:
        raise Unsupported(f"no seccomp filter for the {arch} architecture")
    code = []  # (opcode, jump-true label or 0, jump-false label or 0, k)

    def op(opcode, k, jt=0, jf=0):
        code.append([opcode, jt, jf, k])

    op(LD_W_ABS, ARCH)
    op(JEQ_K, AUDIT_ARCH[arch], jf="deny")
    op(LD_W_ABS, NR)
    if arch == "x86_64":
        op(JGE_K, X32_SYSCALL_BIT, jt="deny")
    for name in DENIED:
        number = _number(name, arch)
        if number is not None:
            op(JEQ_K, number, jt="deny")
    op(JEQ_K, _number("clone3", arch), jt="enosys")
    op(JEQ_K, _number("clone", arch), jt="clone")
    op(JEQ_K, _number("unshare", arch), jt="unshare")
    op(JEQ_K, _number("ioctl", arch), jt="ioctl")
    labels = {}

    def label(name):
        labels[name] = len(code)

    op(RET_K, RET_ALLOW)
    label("clone")
    op(LD_W_ABS, ARG0)
    op(JSET_K, CLONE_NAMESPACES, jt="deny")
    op(RET_K, RET_ALLOW)
    label("unshare")
    op(LD_W_ABS, ARG0)
    op(JSET_K, CLONE_NAMESPACES | CLONE_NEWTIME, jt="deny")
    op(RET_K, RET_ALLOW)
    label("ioctl")
    op(LD_W_ABS, ARG1)
    op(JEQ_K, TIOCSTI, jt="deny")
    op(JEQ_K, TIOCLINUX, jt="deny")
    op(RET_K, RET_ALLOW)
    label("enosys")
    op(RET_K, RET_ERRNO | errno.ENOSYS)
    label("deny")
    op(RET_K, RET_ERRNO | errno.EPERM)
    out = bytearray()
    for index, (opcode, jt, jf, k) in enumerate(code):
        jumps = []
        for target in (jt, jf):
            offset = labels[target] - index - 1 if target else 0
            if not 0 <= offset <= 255:
                raise AssertionError(f"seccomp jump {target} out of reach")
            jumps.append(offset)
        out += struct.pack("<HBBI", opcode, jumps[0], jumps[1], k)
    return bytes(out)


# Installs the filter (hex in argv[1]) in the running process, then execs argv[2:]. Run by the
# sandbox's own Python after nsenter and setpriv (which set no_new_privs), inside the sandbox.
LOADER = """
import ctypes, os, struct, sys
filt = bytes.fromhex(sys.argv[1])
buf = ctypes.create_string_buffer(filt, len(filt))
prog = struct.pack("HxxxxxxP", len(filt) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.c_char_p(prog), 0, 0):
    sys.exit("cannot install the sandbox's system call filter: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[2], sys.argv[2:])
"""


def exec_prefix():
    """argv that installs the filter in the current process and then execs what follows it."""
    return [sys.executable, "-I", "-S", "-c", LOADER, program().hex()]
