"""Run the whole platform under one supervisor: daphne (web) and a Celery worker (with the embedded beat).

Used by `make run`. Scaled out (README, "Add a worker host"): `serve --no-web` on each extra worker
host runs its Celery worker alone (no beat: the reaper runs once, with the web), and
`serve --no-worker --beat` runs a web host without jobs but with the reaper's beat.

The supervisor also reaps the processes orphaned below it (become_subreaper): each job's sandbox
leaves one. A child that dies is restarted, after a delay that doubles with each quick death in a row (1 s, 2 s,
4 s... up to a minute); one that keeps dying quickly is reported as such. Ctrl-C (or SIGTERM) stops
every process. The children die with the supervisor even when it is
killed outright (SIGKILL): each asks the kernel for that before it starts (PR_SET_PDEATHSIG), so no
orphan keeps the port or the jobs.
"""

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from projects.accounts import ensure_admin

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only


def become_subreaper():
    """Adopt the orphans of every process below this one, so that the supervisor reaps them (see
    Supervisor.reap_orphans); return whether the kernel agreed.

    Every sandbox leaves one: bubblewrap's outer process exits once it has its job's exit status,
    before its inner one (the job's pid 1) is reaped, and that one is reparented to the nearest
    subreaper, otherwise to the machine's pid 1. In a container whose pid 1 reaps nothing (`make run`
    as a container's command, without `--init`), each job would leave a zombie until the container's
    process limit stopped new jobs from starting.
    """
    return _prctl is not None and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _die_with(parent_pid):
    """A preexec_fn: SIGKILL this child when the supervisor dies, however it dies.

    The kernel sends it when the *thread* that forked the child ends: the supervisor forks from
    its main thread, which lives as long as the process.
    """

    def preexec():
        if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the supervisor died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec if _prctl is not None else None


def port_problem(host, port):
    """Why `host`:`port` cannot be listened on (a sentence), or None if it can.

    Bound as daphne binds (SO_REUSEADDR), so connections of an earlier server still in TIME_WAIT
    do not count as the port being taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use: another dxweb, or another program, "
                    f"listens there (`ss -ltnp 'sport = :{port}'` shows which). Stop it, or choose "
                    "another port with --port or DXWEB_PORT"
                )
            return f"cannot listen on {host}:{port}: {err.strerror}"
    return None


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def describe_status(code):
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Child:
    def __init__(self, name, argv):
        self.name = name
        self.argv = argv
        self.proc = None
        self.started = 0.0
        self.quick_deaths = 0  # deaths in a row, each soon after its start
        self.restart_at = 0.0


class Supervisor:
    """Keep a set of commands running, each in its own process group; restart what dies, with backoff."""

    def __init__(self, commands, cwd=None, warn=print, first_delay=1.0, max_delay=60.0, quick=30.0, report_after=3):
        self.children = [Child(name, argv) for name, argv in commands.items()]
        self.cwd = cwd
        self.warn = warn
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.quick = quick  # a child that ran less than this before dying died "quickly"
        self.report_after = report_after

    def start(self):
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child):
        # Own process groups: the supervisor alone decides when children stop (Ctrl-C reaches it only).
        child.proc = subprocess.Popen(
            child.argv,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )
        child.started = time.monotonic()

    def check(self):
        """Notice dead children and restart those whose delay is over; call it a few times a second."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                if now >= child.restart_at:
                    self._spawn(child)
            elif os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                self._died(child, now)
        self.reap_orphans()

    def reap_orphans(self):
        """Reap the adopted processes that have ended (become_subreaper), never a supervised child:
        check() reaps those, and reads their status. Return how many were reaped."""
        ours = {child.proc.pid for child in self.children if child.proc is not None}
        reaped = 0
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # no child at all
                return reaped
            if ended is None or ended.si_pid in ours:  # a supervised child's end waits for check()
                return reaped
            os.waitpid(ended.si_pid, 0)
            reaped += 1

    def _died(self, child, now):
        # Still unreaped, so its process group cannot have been reused: end what it left behind
        # (the Celery worker's embedded beat would otherwise live on beside the next worker's).
        _kill_group(child.proc.pid, signal.SIGKILL)
        status = describe_status(child.proc.wait())
        ran = now - child.started
        child.quick_deaths = child.quick_deaths + 1 if ran < self.quick else 1
        delay = min(self.first_delay * 2 ** (child.quick_deaths - 1), self.max_delay)
        if child.quick_deaths >= self.report_after:
            self.warn(
                f"{child.name} keeps dying: {child.quick_deaths} times in a row, each within "
                f"{self.quick:g} s of starting (it {status}; its output is above). "
                f"Next try in {delay:g} s; Ctrl-C stops everything."
            )
        else:
            self.warn(f"{child.name} {status} after {ran:.1f} s; restarting it in {delay:g} s")
        child.proc = None
        child.restart_at = now + delay

    def stop(self, timeout=15.0):
        """Ask each child to stop (SIGTERM to it alone: a Celery worker then stops its own pool, which
        signalled itself would die as if killed), then end whatever is left of each group."""
        running = [child.proc for child in self.children if child.proc is not None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(proc.pid, signal.SIGKILL)  # whatever is left of the group
            proc.wait()


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Command(BaseCommand):
    help = "Migrate, create the first admin, and run the web server and a worker until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("DXWEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("DXWEB_PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("DXWEB_WORKER_CONCURRENCY", "2")))
        parser.add_argument("--no-worker", action="store_true", help="serve the web side only")
        parser.add_argument(
            "--no-web",
            action="store_true",
            help="run the Celery worker only, without the beat: an extra worker host of a scaled-out installation",
        )
        parser.add_argument(
            "--beat",
            action="store_true",
            help="also run the reaper's beat (exactly one per installation) beside --no-worker or --no-web",
        )

    def handle(self, *args, host, port, concurrency, no_worker, no_web, beat, **opts):
        if no_web and no_worker:
            raise CommandError("dxweb cannot start: --no-web and --no-worker leave nothing to run.")
        if no_web:
            # A worker host of an installation whose web host migrates and makes the admin.
            return self._serve(self._commands(None, None, concurrency, worker=True, beat=beat), None, None)
        problem = port_problem(host, port)
        if problem:
            raise CommandError(f"dxweb cannot start: {problem}.")
        call_command("migrate", interactive=False, verbosity=0)
        admin = ensure_admin(
            os.environ.get("DXWEB_ADMIN_USER") or "admin",
            os.environ.get("DXWEB_ADMIN_PASSWORD") or None,
            os.environ.get("DXWEB_ADMIN_TOKEN") or None,
        )
        # The embedded default runs the beat in the worker (-B); a web host without a worker, on --beat.
        commands = self._commands(host, port, concurrency, worker=not no_worker, beat=beat or not no_worker)
        self._serve(commands, (host, port), admin)

    def _commands(self, host, port, concurrency, worker, beat):
        bindir = os.path.dirname(sys.executable)
        commands = {}
        if host is not None:
            commands["web"] = [os.path.join(bindir, "daphne"), "-b", host, "-p", str(port), "dxweb.asgi:application"]
        if worker:
            commands["worker"] = [
                os.path.join(bindir, "celery"),
                "-A",
                "dxweb",
                "worker",
                "-l",
                "INFO",
                "-c",
                str(concurrency),
                "-n",
                f"dxweb-{os.getpid()}@%h",
            ]
            if beat:  # the embedded beat runs the reaper; scaled out, exactly one host runs it
                commands["worker"].append("-B")
        elif beat:
            commands["beat"] = [os.path.join(bindir, "celery"), "-A", "dxweb", "beat", "-l", "INFO"]
        return commands

    def _serve(self, commands, web, admin):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        become_subreaper()
        supervisor = Supervisor(commands, cwd=settings.BASE_DIR, warn=self.stderr.write)
        supervisor.start()
        if web is None:
            self.stdout.write(self.style.SUCCESS(f"\ndxweb worker host {settings.DXWEB_WORKER_NAME} is running"))
            self.stdout.write(f"  data directory: {settings.DATA_DIR}")
            self.stdout.write(f"  its jobs reach the API at {settings.DXWEB_API_URL}")
            self.stdout.write("  press Ctrl-C to stop\n")
        host, port = web or (None, None)
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        announced = web is None
        while not stopping:
            supervisor.check()
            if not announced and port_open(shown_host, port):
                announced = True
                self._announce(f"http://{shown_host}:{port}/", *admin)
            time.sleep(0.2)
        supervisor.stop()
        self.stdout.write("dxweb stopped")

    def _announce(self, url, admin, password, token):
        self.stdout.write(self.style.SUCCESS(f"\ndxweb is running at {url}"))
        self.stdout.write(f"  data directory: {settings.DATA_DIR}")
        if admin is not None and password:
            self.stdout.write(f"  log in as {admin.username} with password: {password}  (shown once)")
        elif admin is not None:
            self.stdout.write(f"  log in as {admin.username} (password from DXWEB_ADMIN_PASSWORD)")
        else:
            self.stdout.write("  log in with your account (`python manage.py changepassword admin` resets it)")
        if token:
            self.stdout.write(f"  admin API token: {token}  (shown once; more on the profile page)")
        self.stdout.write("  press Ctrl-C to stop\n")
