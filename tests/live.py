"""The real server for end-to-end tests: `manage.py serve` (daphne + a Celery worker) in subprocesses.

It runs against its own data directory and database: SQLite by default, a
fresh PostgreSQL database when DATABASE_URL names one, Redis when REDIS_URL is set.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_postgres(url):
    """Create an empty database beside the one DATABASE_URL names; return (its URL, a drop callback)."""
    import psycopg

    parsed = urlparse(url)
    name = f"dxweb_live_{secrets.token_hex(4)}"
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunparse(parsed._replace(path=f"/{name}")), drop


class LiveServer:
    def __init__(self, tmp, extra_env=None, extra_args=()):
        self.tmp = Path(tmp)
        self.extra_args = list(extra_args)  # for `manage.py serve`, e.g. ["--no-worker"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(24)
        self.admin_password = secrets.token_urlsafe(12)
        self.env = {
            **os.environ,
            "DXWEB_DATA_DIR": str(self.tmp / "data"),
            "DXWEB_PORT": str(self.port),
            "DXWEB_HOST": "127.0.0.1",
            "DXWEB_ADMIN_USER": "admin",
            "DXWEB_ADMIN_PASSWORD": self.admin_password,
            "DXWEB_ADMIN_TOKEN": self.admin_token,
            "PYTHONUNBUFFERED": "1",
            # Its own Celery queue and channel-layer keys: servers of one run share a Redis in the
            # scaled-out pass, and a session-wide server's worker must not take another's jobs.
            "DXWEB_NAMESPACE": f"dxweb-live-{secrets.token_hex(4)}",
            # The session-wide server runs many tests' jobs at once, debug holds among them: a capacity
            # of its own, not this machine's two cores, so that none waits for another test's job
            # (tests of capacity set theirs).
            "DXWEB_WORKER_CORES": "64",
            "DXWEB_WORKER_MEMORY_MB": str(512 * 1024),
            # The usual instance types, and one with a small disk for the disk limit's tests.
            "DXWEB_INSTANCE_TYPES": json.dumps(
                {**settings.DXWEB_INSTANCE_TYPES, "test_small_disk": {"cpus": 1, "memory_mb": 1024, "disk_mb": 64}}
            ),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        # No system bwrap: jobs run under the one requirements.txt installs, as on a fresh machine.
        self.env["PATH"] = os.pathsep.join(
            d for d in self.env.get("PATH", "").split(os.pathsep) if d and not os.path.exists(os.path.join(d, "bwrap"))
        )
        self.env.update(extra_env or {})
        self._drop = None
        db_url = self.env.get("DATABASE_URL", "")
        if db_url.startswith(("postgres://", "postgresql://")):
            self.env["DATABASE_URL"], self._drop = _fresh_postgres(db_url)
        self.log_path = self.tmp / "server.log"
        self.proc = None
        self.tokens = {"admin": self.admin_token}

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "python"), "manage.py", "serve", *self.extra_args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.log_path.read_text()[-4000:]}")
            if "dxweb is running" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"the server did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self, drop=True):
        """Stop the server as Ctrl-C does; then drop its PostgreSQL database, unless `drop` is false
        (a test reads it first; a later stop() drops it)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if drop and self._drop:
            self._drop()

    def manage(self, *args):
        return subprocess.run(
            [str(BIN / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )

    def user(self, handle, password=None):
        """Create a user (password defaults to '<handle>-password'); return their API token."""
        if handle not in self.tokens:
            out = self.manage("dxuser", "add", handle, "--password", password or f"{handle}-password", "--token")
            self.tokens[handle] = out.stdout.strip().splitlines()[-1]
        return self.tokens[handle]

    def api(self, path, body=None, token=None, expect=200):
        """POST to the API; return (status, JSON)."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.admin_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, data = response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            status, data = err.code, json.loads(err.read())
        if expect is not None:
            assert status == expect, (path, status, data)
        return data

    def dx_env(self, token, conf_dir):
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "DX_APISERVER_PROTOCOL": "http",
            "DX_APISERVER_HOST": "127.0.0.1",
            "DX_APISERVER_PORT": str(self.port),
            "DX_SECURITY_CONTEXT": json.dumps({"auth_token": token, "auth_token_type": "Bearer"}),
            "DX_USER_CONF_DIR": str(conf_dir),
        }
        for var in ("DX_PROJECT_CONTEXT_ID", "DX_CLI_WD", "DX_JOB_ID", "DX_WORKSPACE_ID"):
            env.pop(var, None)
        return env


@pytest.fixture(scope="session")
def live_server_proc(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()


class Dx:
    """Run the unmodified `dx` CLI as one user against the live server."""

    def __init__(self, server, token, workdir):
        self.server, self.token, self.workdir = server, token, Path(workdir)
        self.env = server.dx_env(token, self.workdir / "dxconf")

    def __call__(self, *args, check=True, project=None, input=None, timeout=300, text=True):
        env = dict(self.env)
        if project:
            env["DX_PROJECT_CONTEXT_ID"] = project
        result = subprocess.run(
            [str(BIN / "dx"), *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=text,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"dx {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def live(live_server_proc):
    return live_server_proc


@pytest.fixture
def dx_as(live, tmp_path):
    """dx_as('alice') returns a Dx runner authenticated as that user (created on first use)."""

    def make(handle):
        workdir = tmp_path / handle
        workdir.mkdir(exist_ok=True)
        return Dx(live, live.user(handle), workdir)

    return make
