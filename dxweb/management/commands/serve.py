"""Run the whole platform under one supervisor: daphne (web) and a Celery worker.

Used by `make run`. Ctrl-C (or SIGTERM) stops every process; if one dies, the
others are stopped too and the exit status says so.
"""
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from projects.accounts import ensure_admin


def wait_for_port(host, port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Command(BaseCommand):
    help = "Migrate, create the first admin, and run the web server and a worker until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("DXWEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("DXWEB_PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("DXWEB_WORKER_CONCURRENCY", "2")))
        parser.add_argument("--no-worker", action="store_true", help="serve the web side only")

    def handle(self, *args, host, port, concurrency, no_worker, **opts):
        call_command("migrate", interactive=False, verbosity=0)
        admin, password, token = ensure_admin(
            os.environ.get("DXWEB_ADMIN_USER") or "admin",
            os.environ.get("DXWEB_ADMIN_PASSWORD") or None,
            os.environ.get("DXWEB_ADMIN_TOKEN") or None,
        )
        bindir = os.path.dirname(sys.executable)
        commands = {"web": [os.path.join(bindir, "daphne"), "-b", host, "-p", str(port), "dxweb.asgi:application"]}
        if not no_worker:
            commands["worker"] = [
                os.path.join(bindir, "celery"), "-A", "dxweb", "worker", "-l", "INFO",
                "-c", str(concurrency), "-n", f"dxweb-{os.getpid()}@%h",
                # The embedded beat runs the reaper; scaled out, run one `celery -A dxweb beat`.
                "-B",
            ]
        procs = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, cmd in commands.items():
            # Own process groups: the supervisor alone decides when children stop.
            procs[name] = subprocess.Popen(cmd, cwd=settings.BASE_DIR, start_new_session=True)
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown_host}:{port}/"
        if wait_for_port(shown_host, port):
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
        status = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with status {proc.returncode}; stopping")
                    status = proc.returncode or 1
                    stopping = True
            time.sleep(0.2)
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.stdout.write("dxweb stopped")
        sys.exit(status)
