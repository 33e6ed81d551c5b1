"""Several worker hosts, proven: two hosts of our own in network namespaces beside one web server.

The layout README.md's "Add a worker host" describes, on one machine: a bridge is the LAN; the web
server (`manage.py serve --no-worker --beat`: the web and the reaper's beat), PostgreSQL and Redis
are reached at its address; each worker host is a network namespace on it running
`manage.py serve --no-web` with its own DXWEB_WORKER_NAME, data directory and SSH gateway address.
The tests spread jobs over both, reach a held job on the second with `dx ssh` and the browser
terminal's websocket, kill one host outright, and cut one host's cable while its job runs.

They run in the scaled-out pass (DATABASE_URL names PostgreSQL, REDIS_URL is set) and need root (to
make namespaces). Elsewhere they skip, saying why; in CI (CI=true) what is missing is a failure.
"""

import json
import os
import secrets
import signal
import subprocess
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import redis
import websocket

from dxweb.management.commands.serve import _die_with
from tests.helpers import sleeping, unique_seconds, wait_for
from tests.jobs.ssh.test_debug_hold import need
from tests.live import BIN, ROOT, Dx, LiveServer
from tests.multihost.network import Network, NetworkUnavailable, Relay

pytestmark = pytest.mark.live

HOSTS = ("host1", "host2")
LEASE_SECONDS = 4
# A short lease, renewed twice a second, checked every second: a vanished host is noticed in seconds.
SHORT_LEASE = {"DXWEB_LEASE_SECONDS": str(LEASE_SECONDS), "DXWEB_HEARTBEAT_SECONDS": "0.5", "DXWEB_REAP_SECONDS": "1"}

# Says when it started (its output: which try's result was recorded), sleeps, says it woke up.
STAMP = """#!/bin/bash
main() {
    started=$(date +%s%3N)
    echo "$tag started at $started"
    sleep "$seconds"
    echo "$tag woke up"
    dx-jobutil-add-output started "$started" --class=string
}
"""
# Fails, leaving a clue in its home: held for debugging with debug.debugOn.
FAIL = """#!/bin/bash
main() {
    echo "left behind by the job" > "$HOME/clue.txt"
    exit 3
}
"""


def unavailable(message):
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def on_lan(url, address):
    """`url` with its host replaced by `address` (the relay's side of the LAN)."""
    parsed = urlparse(url)
    netloc = address + (f":{parsed.port}" if parsed.port else "")
    if parsed.username:
        netloc = parsed.username + (f":{parsed.password}" if parsed.password else "") + "@" + netloc
    return urlunparse(parsed._replace(netloc=netloc))


class WorkerHost:
    """`manage.py serve --no-web` in a host's namespace, with that host's settings."""

    def __init__(self, cluster, name):
        self.name = name
        self.network = cluster.network
        self.address = cluster.network.hosts[name]["address"]
        self.log_path = cluster.tmp / f"{name}.log"
        server, lan = cluster.server, cluster.network.address
        self.env = {
            **{k: v for k, v in server.env.items() if not k.startswith("DXWEB_ADMIN_")},
            # What README.md's "Add a worker host" sets on each extra host.
            "DXWEB_WORKER_NAME": name,
            "DXWEB_DATA_DIR": str(cluster.tmp / name / "data"),
            "DATABASE_URL": on_lan(server.env["DATABASE_URL"], lan),
            "REDIS_URL": on_lan(server.env["REDIS_URL"], lan),
            "DXWEB_API_URL": server.url,
            "DXWEB_SSH_BIND": self.address,
            "DXWEB_SSH_HOST": self.address,
        }
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.network.prefix(self.name), str(BIN / "python"), "manage.py", "serve", "--no-web"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),  # a killed test run takes its hosts with it
            )
        offset = len(self.log())
        wait_for(lambda: self.proc.poll() is not None or " ready." in self.log()[offset:], 90, f"{self.name} to start")
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()[-3000:]}"
        assert f"dxweb worker host {self.name} is running" in self.log()
        return self

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self):
        """The host dies: SIGKILL to every process in its namespace at once (supervisor, worker, pool)."""
        for pid in self.network.pids(self.name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.network.pids(self.name):  # whatever is left on the host
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(10)


class Cluster:
    def __init__(self, tmp, network, server, token):
        self.tmp, self.network, self.server, self.token = tmp, network, server, token
        self.hosts = {}
        self.project = server.api("/project/new", {"name": "several hosts"}, token=token)["id"]
        inputs = [{"name": "seconds", "class": "string"}, {"name": "tag", "class": "string"}]
        self.stamp = self.applet("stamp", STAMP, inputs, [{"name": "started", "class": "string"}])
        self.fail = self.applet("fail", FAIL, [], [])

    def applet(self, name, code, inputs, outputs):
        run_spec = {"interpreter": "bash", "code": code, "distribution": "Ubuntu", "release": "24.04", "version": "0"}
        body = {"project": self.project, "name": name, "inputSpec": inputs, "outputSpec": outputs, "runSpec": run_spec}
        return self.server.api("/applet/new", body, token=self.token)["id"]

    def run(self, applet, **body):
        return self.server.api(f"/{applet}/run", {"project": self.project, **body}, token=self.token)["id"]

    def nap(self, seconds, tag):
        return self.run(self.stamp, input={"seconds": seconds, "tag": tag})

    def describe(self, job_id):
        return self.server.api(f"/{job_id}/describe", {}, token=self.token)

    def log(self, job_id):
        lines = self.server.api(f"/{job_id}/getLog", {}, token=self.token)["loglines"]
        return "\n".join(line["msg"] for line in lines)

    def leases(self, job_ids):
        """{job id: (host name, tries, state)}, read from the database: which host runs (ran) each job."""
        with psycopg.connect(self.server.env["DATABASE_URL"]) as conn:
            rows = conn.execute(
                "SELECT id, worker, tries, state FROM jobs_job WHERE id = ANY(%s)", [list(job_ids)]
            ).fetchall()
        return {job_id: (worker.split(":")[0], tries, state) for job_id, worker, tries, state in rows}

    def processes(self, seconds):
        """{host name: number of processes of the jobs sleeping `seconds`} (a job's marker)."""
        counts = {}
        for proc in sleeping(seconds):
            host = self.network.host_of(proc)
            counts[host] = counts.get(host, 0) + 1
        return counts


def states(job):
    return [t["newState"] for t in job["stateTransitions"]]


def ended(cluster, job_ids, timeout=90):
    def all_ended():
        jobs = [cluster.describe(job_id) for job_id in job_ids]
        return all(j["state"] in ("done", "failed", "terminated") for j in jobs) and jobs

    return wait_for(all_ended, timeout, f"{len(job_ids)} jobs to end", interval=0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    database, broker = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database.startswith(("postgres://", "postgresql://")) or not broker:
        pytest.skip("several hosts are tried in the scaled-out pass (DATABASE_URL names PostgreSQL, REDIS_URL is set)")
    try:
        # The `postgres` database beside DATABASE_URL's: where tests/live.py creates each server's own.
        psycopg.connect(urlunparse(urlparse(database)._replace(path="/postgres")), connect_timeout=3).close()
        redis.Redis.from_url(broker, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach a service
        unavailable(f"PostgreSQL or Redis is not reachable ({exc}); the several-hosts tests need both")
    need("ssh", "dx ssh runs OpenSSH")
    tmp = tmp_path_factory.mktemp("multihost")
    network = relay = server = None
    hosts = []
    try:
        try:
            network = Network(HOSTS).build()
        except NetworkUnavailable as err:
            unavailable(f"cannot make worker hosts in network namespaces: {err}")
        lan = network.address
        relay = Relay().start()
        for url, default_port in ((database, 5432), (broker, 6379)):
            parsed = urlparse(url)
            port = parsed.port or default_port
            relay.forward((lan, port), (parsed.hostname, port))
        env = {
            **SHORT_LEASE,
            "DXWEB_HOST": lan,
            "DXWEB_ALLOWED_HOSTS": f"{lan},127.0.0.1,localhost",
            "DXWEB_SECRET_KEY": secrets.token_urlsafe(50),  # the same on every host
            "DXWEB_BLOB_DIR": str(tmp / "blobs"),  # shared by every host (an NFS mount on real ones)
            "DXWEB_DEBUG_HOLD_SECONDS": "600",
        }
        (tmp / "web").mkdir()
        server = LiveServer(tmp / "web", extra_env=env, extra_args=["--no-worker", "--beat"])
        server.url = f"http://{lan}:{server.port}"
        server.start()
        cluster = Cluster(tmp, network, server, server.user("alice"))
        hosts = [WorkerHost(cluster, name) for name in HOSTS]
        for host in hosts:
            cluster.hosts[host.name] = host.start()
        yield cluster
    finally:
        for host in hosts:
            host.stop()
        if server is not None:
            server.stop()
        if relay is not None:
            relay.stop()
        if network is not None:
            network.destroy()


@pytest.fixture(scope="module")
def alice(cluster, tmp_path_factory):
    """alice's dx on the LAN, with `dx ssh_config` done (her key pair offered and linked)."""
    server = cluster.server
    dx = Dx(server, cluster.token, tmp_path_factory.mktemp("alice"))
    dx.env["DX_APISERVER_HOST"] = cluster.network.address
    dx("select", cluster.project)
    home = dx.workdir / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    dx.env["HOME"] = str(home)
    assert "id_ed25519.pub" in dx("ssh_config", input="1\n").stdout
    return dx


def test_the_web_host_runs_the_beat_and_the_worker_hosts_do_not(cluster):
    web = cluster.server.log_path.read_text(errors="replace")
    assert "beat: Starting..." in web
    for host in cluster.hosts.values():
        assert "beat: Starting..." not in host.log()
        assert f"worker host {host.name}:" in host.log()


def test_a_burst_of_jobs_spreads_over_both_hosts(cluster):
    seconds = unique_seconds(2)
    job_ids = [cluster.nap(seconds, f"burst{i}") for i in range(6)]
    jobs = ended(cluster, job_ids)
    assert [j["state"] for j in jobs] == ["done"] * 6, [j.get("failureMessage") for j in jobs]
    leases = cluster.leases(job_ids)
    assert {host for host, _, _ in leases.values()} == set(HOSTS), leases
    assert all(tries == 1 for _, tries, _ in leases.values()), leases
    for job_id, (host, _, _) in leases.items():
        assert f"Running stamp (main) on {host}:" in cluster.log(job_id)


ASSET_JOBS = """
import io, json, tarfile
import dxpy

data = b"from the asset"
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    info = tarfile.TarInfo("opt/hello_asset/hello.txt")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
bundle = dxpy.upload_string(buf.getvalue(), name="hello_asset.tar.gz", wait_on_close=True)
details = {"archiveFileId": dxpy.dxlink(bundle.get_id())}
record = dxpy.new_dxrecord(name="hello_asset", types=["AssetBundle"], details=details, close=True)
code = 'main() {\\n  sleep 3\\n  dx-jobutil-add-output greeting "$(cat /opt/hello_asset/hello.txt)" --class string\\n}'
applet = dxpy.api.applet_new({
    "project": dxpy.PROJECT_CONTEXT_ID, "name": "uses-asset", "dxapi": "1.0.0",
    "inputSpec": [], "outputSpec": [{"name": "greeting", "class": "string"}],
    "runSpec": {"interpreter": "bash", "code": code, "distribution": "Ubuntu", "release": "24.04",
                "version": "0", "assetDepends": [{"id": dxpy.dxlink(record.get_id())}]},
})["id"]
print(json.dumps([dxpy.DXApplet(applet).run({}).get_id() for _ in range(4)]))
"""


def test_jobs_on_either_host_unpack_their_assets_from_the_shared_blob_directory(cluster, alice):
    out = subprocess.run(
        [str(BIN / "python"), "-c", ASSET_JOBS],
        env={**alice.env, "DX_PROJECT_CONTEXT_ID": cluster.project},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    job_ids = json.loads(out.strip().splitlines()[-1])
    jobs = ended(cluster, job_ids)
    assert [(j["state"], j["output"]) for j in jobs] == [("done", {"greeting": "from the asset"})] * 4, [
        (j["state"], j.get("failureMessage")) for j in jobs
    ]
    # Two jobs at once on each host: of four at once, each host ran some.
    assert {host for host, _, _ in cluster.leases(job_ids).values()} == set(HOSTS)


def test_dx_ssh_and_the_browser_terminal_reach_a_held_job_on_the_second_host(cluster, alice):
    lan, second = cluster.network.address, cluster.network.hosts["host2"]["address"]
    body = {"debug": {"debugOn": ["AppInternalError"]}, "allowSSH": [lan]}
    # Each host runs two jobs at once and a held job keeps its lane: of three, one is the second host's.
    job_ids = [cluster.run(cluster.fail, **body) for _ in range(3)]
    try:
        wait_for(lambda: all(cluster.describe(j)["state"] == "debug_hold" for j in job_ids), 90, "the jobs to be held")
        on_second = [j for j, (host, _, _) in cluster.leases(job_ids).items() if host == "host2"]
        assert on_second, cluster.leases(job_ids)
        job_id = on_second[0]
        job = wait_for(lambda: (j := cluster.describe(job_id))["sshHostKey"] and j, 30, "the gateway to start")
        assert job["host"] == second and job["sshHostKey"], job  # the gateway on its host, not 127.0.0.1

        out = alice("ssh", job_id, "-o", "BatchMode=yes", "hostname; cat clue.txt", input="n\n", timeout=120).stdout
        assert f"Connecting to {second}:{job['sshPort']}" in out, out
        assert job_id in out and "left behind by the job" in out, out

        # The browser terminal: the web server's proxy reaches the gateway across the LAN.
        login = (
            "from django.conf import settings; from django.test import Client; from projects.models import User; "
            "c = Client(); c.force_login(User.objects.get(username='alice')); "
            "print(settings.SESSION_COOKIE_NAME, c.cookies[settings.SESSION_COOKIE_NAME].value)"
        )
        name, value = cluster.server.manage("shell", "-c", login).stdout.split()[-2:]
        origin = f"http://{lan}:{cluster.server.port}"
        ws = websocket.create_connection(
            f"ws://{lan}:{cluster.server.port}/ws/jobs/{job_id}/terminal/",
            header=[f"Cookie: {name}={value}"],
            origin=origin,
            timeout=30,
        )
        try:
            ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
            opcode, data = ws.recv_data()
            status = json.loads(data)
            assert status["state"] == "open", status
            ws.send(json.dumps({"type": "input", "data": "cat clue.txt; echo reached-$((40+2))\r"}))
            seen = b""
            while b"reached-42" not in seen:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    seen += data
                else:
                    assert json.loads(data).get("state") == "open", data
            assert b"left behind by the job" in seen
        finally:
            ws.close()
        with psycopg.connect(cluster.server.env["DATABASE_URL"]) as conn:
            vias = conn.execute("SELECT via FROM jobs_sshsession WHERE job_id = %s", [job_id]).fetchall()
        assert sorted(v for (v,) in vias) == ["browser", "ssh"], vias
    finally:
        for job_id in job_ids:
            alice("terminate", job_id, check=False)
    assert {j["state"] for j in ended(cluster, job_ids)} == {"terminated"}


def test_a_host_killed_outright_has_its_jobs_rerun_on_the_other(cluster):
    seconds = unique_seconds(6)
    # Two jobs at once on each host: four fill both.
    job_ids = [cluster.nap(seconds, f"doomed{i}") for i in range(4)]

    def running():
        leases = cluster.leases(job_ids).values()
        return all(state == "running" for _, _, state in leases) and cluster.processes(seconds).get("host2")

    wait_for(running, 60, "the jobs to run, some on the second host")
    victims = [j for j, (host, _, _) in cluster.leases(job_ids).items() if host == "host2"]
    survivors = [j for j in job_ids if j not in victims]
    assert victims

    cluster.hosts["host2"].kill()
    # Its jobs' sandboxes die with it (bubblewrap's --die-with-parent), before another try starts.
    wait_for(lambda: not cluster.processes(seconds).get("host2"), 10, "no process of the dead host's jobs left")
    assert all(tries == 1 for _, tries, _ in cluster.leases(victims).values())

    jobs = {j["id"]: j for j in ended(cluster, job_ids, timeout=LEASE_SECONDS + 60)}
    assert {j["state"] for j in jobs.values()} == {"done"}, [j.get("failureMessage") for j in jobs.values()]
    leases = cluster.leases(job_ids)
    for job_id in victims:
        assert leases[job_id][:2] == ("host1", 2), leases
        assert states(jobs[job_id]) == ["runnable", "running", "runnable", "running", "done"]
        log = cluster.log(job_id)
        assert "stopped renewing this job's lease" in log and "host2:" in log, log
        assert log.count("woke up") == 1, log
    for job_id in survivors:
        assert leases[job_id][1] == 1 and states(jobs[job_id]).count("running") == 1
    # The host comes back: the same command, its data directory kept.
    cluster.hosts["host2"].start()


def partition(cluster, seconds, tag):
    """Run a job, cut the cable of the host running it until the other host has taken it over (its
    second try runs), mend it; return (job id, the cut host, the other, {host: its processes of the
    job} while both had the job)."""
    job_id = cluster.nap(seconds, tag)
    wait_for(lambda: cluster.processes(seconds), 60, "the first try's sleep to start")
    cut_host, _, _ = cluster.leases([job_id])[job_id]
    other = next(h for h in HOSTS if h != cut_host)
    cluster.network.cut(cut_host)
    try:
        wait_for(
            lambda: cluster.leases([job_id])[job_id] == (other, 2, "running"),
            LEASE_SECONDS + 30,
            "the other host to take the job over",
        )
        wait_for(lambda: cluster.processes(seconds).get(other), 30, "the second try's sleep to start")
        both = cluster.processes(seconds)
    finally:
        cluster.network.mend(cut_host)
    return job_id, cut_host, other, both


def test_a_partitioned_host_cannot_record_the_result_of_a_job_another_host_took_over(cluster):
    seconds = unique_seconds(8)
    job_id, cut_host, other, both = partition(cluster, seconds, "partitioned")
    assert both.get(other) == 1, both

    job = ended(cluster, [job_id], timeout=60)[0]
    assert job["state"] == "done", job.get("failureMessage")
    assert states(job) == ["runnable", "running", "runnable", "running", "done"], job
    assert cluster.leases([job_id])[job_id][:2] == (other, 2)
    # The recorded result is the second try's: it started after the second try was claimed.
    second_try = [t["setAt"] for t in job["stateTransitions"] if t["newState"] == "running"][1]
    assert int(job["output"]["started"]) >= second_try, (job["output"], second_try)
    # Once its cable is back, the cut host learns it lost the lease at its next heartbeat, kills its
    # copy and says so; its copy's later lines are refused.
    wait_for(lambda: not cluster.processes(seconds), 60, "no process of either try left")
    log = wait_for(
        lambda: (text := cluster.log(job_id)) and "lost this job's lease (try 1)" in text and text,
        60,
        "the cut host to report its lost lease",
    )
    lost = next(line for line in log.splitlines() if "lost this job's lease (try 1)" in line)
    assert lost.startswith(f"{cut_host}:"), lost
    assert log.count("partitioned started at") == 2 and log.count("partitioned woke up") == 1, log


def test_a_partitioned_host_stops_its_copy_before_the_other_host_takes_the_job_over(cluster):
    seconds = unique_seconds(8)
    job_id, cut_host, other, both = partition(cluster, seconds, "cut off")
    assert ended(cluster, [job_id], timeout=60)[0]["state"] == "done"
    # When the other host took the job over, the cut host's copy was gone already (runner.LeaseWatch).
    assert both == {other: 1}, both
