"""The scaled-out engines, chosen by environment variables alone: PostgreSQL and Redis.

On a machine without them these tests skip and say why; in CI (CI=true) a
missing service is a failure.
"""

import os

import pytest

from tests.live import LiveServer

POSTGRES_URL = os.environ.get("DXWEB_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DXWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = pytest.mark.live


def require(service, check):
    try:
        check()
    except Exception as exc:  # any failure to reach the service
        message = f"{service} is not reachable ({exc}); the scaled-out tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def check_postgres():
    import psycopg

    psycopg.connect(POSTGRES_URL, connect_timeout=3).close()


def check_redis():
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()


@pytest.fixture(scope="module")
def scaled_server(tmp_path_factory):
    require("PostgreSQL", check_postgres)
    require("Redis", check_redis)
    server = LiveServer(
        tmp_path_factory.mktemp("scaled"), extra_env={"DATABASE_URL": POSTGRES_URL, "REDIS_URL": REDIS_URL}
    ).start()
    yield server
    server.stop()


PROBE = """
from django.conf import settings
from django.db import connection
from dxweb.celery import app
replies = []
for _ in range(30):
    replies = app.control.ping(timeout=1)
    if replies:
        break
layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
print(connection.vendor, settings.CELERY_BROKER_URL.split(":")[0], layer, len(replies))
"""


def test_the_server_runs_on_postgres_and_redis(scaled_server):
    out = scaled_server.manage("shell", "-c", PROBE).stdout.strip().splitlines()[-1].split()
    vendor, broker, layer, workers = out
    assert vendor == "postgresql" and broker == "redis"
    assert layer == "channels_redis.core.RedisChannelLayer"
    assert int(workers) >= 1  # the worker answered a ping over the Redis broker


def test_a_file_round_trips_through_the_api_on_postgres(scaled_server, tmp_path):
    from tests.live import Dx

    token = scaled_server.user("alice")
    dx = Dx(scaled_server, token, tmp_path)
    project = dx("new", "project", "scaled", "--brief").stdout.strip()
    payload = tmp_path / "data.txt"
    payload.write_text("scaled out\n")
    dx("upload", str(payload), "--path", f"{project}:/", "--wait", "--brief")
    assert dx("cat", f"{project}:/data.txt").stdout == "scaled out\n"


def test_a_quiet_job_keeps_its_watchers_on_redis(scaled_server, tmp_path):
    """Several `dx watch` sockets on a job silent for longer than Redis's read waits stay open to the end."""
    import concurrent.futures
    import json

    from tests.live import Dx

    token = scaled_server.user("alice")
    dx = Dx(scaled_server, token, tmp_path)
    project = dx("new", "project", "quiet", "--brief").stdout.strip()
    applet = scaled_server.api(
        "/applet/new",
        {
            "project": project,
            "name": "quiet",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": 'main() { echo start; sleep 12; echo "after the silence"; }'},
        },
        token=token,
    )["id"]
    job_id = scaled_server.api(f"/{applet}/run", {"project": project}, token=token)["id"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        watches = list(pool.map(lambda _: dx("watch", job_id, check=False, timeout=120), range(6)))
    for watched in watches:
        assert watched.returncode == 0 and "after the silence" in watched.stdout, watched.stderr[-2000:]
    assert json.loads(dx("describe", job_id, "--json").stdout)["state"] == "done"
