"""Debug hold and SSH into jobs with the real `dx` client, OpenSSH and asyncssh (issue: debug hold, SSH).

One live server for the module, sharing the test process's secret key so that the tests can
mint certificates the gateway trusts (and forge ones it must refuse).
"""

import asyncio
import json
import subprocess
import time
from pathlib import Path

import asyncssh
import psutil
import pytest
from django.conf import settings

from tests.helpers import wait_for
from tests.live import Dx, LiveServer

pytestmark = pytest.mark.live

APPS = Path(__file__).parent.parent / "apps"
HOLD_SECONDS = 120


def need(program, why):
    """Skip (fail under CI=true) when a program the SSH tests drive is missing."""
    import os
    import shutil

    if shutil.which(program) is None:
        message = f"{program} is not installed ({why}); apt-get install {program.replace('ssh', 'openssh-client')}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need("ssh", "dx ssh runs OpenSSH")
    env = {
        "DXWEB_SECRET_KEY": settings.SECRET_KEY,
        "DXWEB_DEBUG_HOLD_SECONDS": str(HOLD_SECONDS),
        "DXWEB_HEARTBEAT_SECONDS": "0.5",
    }
    server = LiveServer(tmp_path_factory.mktemp("debug"), extra_env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(server, tmp_path_factory):
    """alice's dx, with `dx ssh_config` done and the debug_me and nap applets built in her project."""
    dx = Dx(server, server.user("alice"), tmp_path_factory.mktemp("alice"))
    project = dx("new", "project", "debugging", "--brief").stdout.strip()
    dx("select", project)
    dx("build", str(APPS / "debug_me"))
    dx("build", str(APPS / "nap"))
    # alice already has a key pair in ~/.ssh: `dx ssh_config` offers it (choice 1) and links it.
    home = dx.workdir / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    dx.env["HOME"] = str(home)
    out = dx("ssh_config", input="1\n").stdout
    assert "id_ed25519.pub" in out
    return dx


def describe(dx, job_id):
    return json.loads(dx("describe", job_id, "--json").stdout)


def held(dx, job_id):
    return wait_for(lambda: (d := describe(dx, job_id))["state"] == "debug_hold" and d, 60, f"{job_id} to be held")


def ended(dx, job_id):
    return wait_for(
        lambda: (d := describe(dx, job_id))["state"] in ("done", "failed", "terminated") and d, 60, f"{job_id} to end"
    )


def ssh(dx, job_id, *command, check=True):
    """`dx ssh job-x <command>`: the client's whole flow, then OpenSSH exactly as it invokes it."""
    return dx("ssh", job_id, "-o", "BatchMode=yes", *command, input="n\n", check=check, timeout=120)


def test_a_failed_job_is_held_and_reached_with_dx_ssh_then_terminated(alice, server):
    job_id = alice("run", "debug_me", "-imode=fail", "--debug-on", "All", "-y", "--brief").stdout.strip()
    job = held(alice, job_id)
    assert job["debug"]["failureReason"] == "AppInternalError"
    assert "exit code 3" in job["debug"]["failureMessage"]
    assert job["debug"]["holdUntil"] > time.time() * 1000 + (HOLD_SECONDS - 30) * 1000
    assert "failureReason" not in job  # not failed (yet): held
    # The whole client flow: allowSSH updated with the client's address, host key recorded, OpenSSH run.
    out = ssh(alice, job_id, "cat clue.txt; ls job_input.json; echo HOME=$HOME; id -u")
    assert "Connecting to 127.0.0.1:" in out.stdout and "127.0.0.1" in describe(alice, job_id)["allowSSH"]
    assert "left behind by the job" in out.stdout and "job_input.json" in out.stdout
    assert "HOME=/home/dnanexus" in out.stdout
    audit = (
        "from jobs.models import SSHSession; "
        f"print([(s.via, s.user.username, s.client_ip) for s in SSHSession.objects.filter(job_id={job_id!r})])"
    )
    assert server.manage("shell", "-c", audit).stdout.strip().endswith("[('ssh', 'alice', '127.0.0.1')]")
    known = (alice.workdir / "dxconf" / "ssh_known_hosts").read_text()
    assert f"{job_id}.dnanex.us {job['sshHostKey'] or describe(alice, job_id)['sshHostKey']}" in known
    alice("terminate", job_id)
    job = ended(alice, job_id)
    assert job["state"] == "terminated"
    assert [t["newState"] for t in job["stateTransitions"]][-3:] == ["debug_hold", "terminating", "terminated"]
    refused = ssh(alice, job_id, "true", check=False)
    assert refused.returncode != 0 and "terminal state terminated" in refused.stderr + refused.stdout


def test_dx_hold_keeps_the_processes_and_release_ends_the_job(alice, server):
    marker = f"dxweb-marker-{time.time_ns()}"
    job_id = alice(
        "run", "debug_me", "-imode=hold_file", f"-imarker={marker}", "--debug-on", "All", "-y", "--brief"
    ).stdout.strip()
    job = held(alice, job_id)
    assert "failureReason" not in job["debug"]
    # The job's own processes are intact, and visible from the shell inside the sandbox.
    assert any(marker in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    out = ssh(alice, job_id, "ps -eo args")
    assert marker in out.stdout
    code = (
        "from jobs import holds; from projects.models import User; from projects.permissions import "
        f"Principal; holds.release_hold(Principal.of(User.objects.get(username='alice')), {job_id!r})"
    )
    server.manage("shell", "-c", code)
    job = ended(alice, job_id)
    assert job["state"] == "terminated" and "released by user-alice" in job["failureMessage"]
    wait_for(
        lambda: not any(marker in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])),
        20,
        "the held processes to end",
    )


def test_an_expired_hold_fails_the_job_with_its_original_error(alice, server):
    job_id = alice("run", "debug_me", "-imode=app_error", "--debug-on", "AppError", "-y", "--brief").stdout.strip()
    assert held(alice, job_id)["debug"]["failureReason"] == "AppError"
    code = (
        "from jobs.models import Job; j = Job.objects.get(pk=%r); j.debug['holdUntil'] = 1; "
        "j.save(update_fields=['debug'])" % job_id
    )
    server.manage("shell", "-c", code)
    job = ended(alice, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "AppError"
    assert "the input is bad" in job["failureMessage"] and "hold expired" in job["failureMessage"]


def test_failures_not_named_in_debug_on_are_not_held(alice):
    job_id = alice("run", "debug_me", "-imode=fail", "--debug-on", "AppError", "-y", "--brief").stdout.strip()
    job = ended(alice, job_id)
    assert job["state"] == "failed" and job["failureReason"] == "AppInternalError"
    assert "debug_hold" not in [t["newState"] for t in job["stateTransitions"]]


def test_a_running_job_allowing_ssh_is_reached_and_the_session_ends_with_it(alice):
    job_id = alice("run", "nap", "-iseconds=600", "--allow-ssh", "127.0.0.1", "-y", "--brief").stdout.strip()
    wait_for(lambda: describe(alice, job_id).get("sshHostKey"), 30, "the gateway to start")
    # dx asks "still running. Terminate now?" once ssh returns; with no terminal to answer, it exits 1.
    out = ssh(alice, job_id, "hostname; cat /proc/1/cmdline | tr '\\0' ' '", check=False)
    assert job_id in out.stdout  # the sandbox's own uts namespace
    assert "bwrap" in out.stdout  # its own pid namespace: pid 1 is the sandbox's init
    assert f"Job {job_id} is still running. Terminate now?" in out.stdout
    # A session still open when the job ends is closed by the gateway.
    job = describe(alice, job_id)
    session = subprocess.Popen(
        [
            "ssh",
            "-i",
            str(alice.workdir / "dxconf" / "ssh_id"),
            "-o",
            "BatchMode=yes",
            "-o",
            f"HostKeyAlias={job_id}.dnanex.us",
            "-o",
            f"UserKnownHostsFile={alice.workdir / 'dxconf' / 'ssh_known_hosts'}",
            "-p",
            str(job["sshPort"]),
            "-l",
            "dnanexus",
            job["host"],
            "echo open; sleep 600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout.readline() == "open\n"
        alice("terminate", job_id)
        assert ended(alice, job_id)["state"] == "terminated"
        session.wait(20)
    finally:
        session.kill()


# --- refusals at the gateway, with asyncssh as the client ------------------------------------------


def connect(job, **kwargs):
    async def attempt():
        conn = await asyncssh.connect(
            job["host"],
            job["sshPort"],
            known_hosts=None,
            agent_path=None,
            config=None,
            preferred_auth="publickey",
            **{"username": "dnanexus", **kwargs},
        )
        async with conn:
            result = await conn.run("echo inside", check=False)
            return result.stdout

    return asyncio.run(attempt())


@pytest.fixture(scope="module")
def napping(alice):
    job_id = alice("run", "nap", "-iseconds=600", "--allow-ssh", "127.0.0.1", "-y", "--brief").stdout.strip()
    job = wait_for(lambda: (d := describe(alice, job_id)).get("sshHostKey") and d, 30, "the gateway to start")
    yield job
    alice("terminate", job_id, check=False)


def alice_key(alice):
    return asyncssh.read_private_key(alice.workdir / "dxconf" / "ssh_id")


def test_the_gateway_accepts_alices_key_and_a_fresh_certificate(alice, napping):
    from jobs.ssh.gateway import mint_certificate
    from projects.models import User

    assert connect(napping, client_keys=[alice_key(alice)]) == "inside\n"
    key, cert = mint_certificate(napping["id"], User(username="alice"), "127.0.0.1")
    assert connect(napping, client_keys=[(key, cert)]) == "inside\n"


@pytest.mark.parametrize(
    "case",
    ["wrong key", "wrong user", "expired certificate", "certificate for another job", "certificate from another CA"],
)
def test_the_gateway_refuses(alice, napping, case):
    from jobs.ssh.gateway import mint_certificate
    from projects.models import User

    alice_user = User(username="alice")
    if case == "wrong key":
        kwargs = {"client_keys": [asyncssh.generate_private_key("ssh-ed25519")]}
    elif case == "wrong user":
        kwargs = {"client_keys": [alice_key(alice)], "username": "root"}
    elif case == "expired certificate":
        now = int(time.time())
        kwargs = {
            "client_keys": [
                mint_certificate(napping["id"], alice_user, "127.0.0.1", valid_after=now - 600, valid_before=now - 300)
            ]
        }
    elif case == "certificate for another job":
        kwargs = {"client_keys": [mint_certificate("job-" + "x" * 24, alice_user, "127.0.0.1")]}
    else:
        ca = asyncssh.generate_private_key("ssh-ed25519")
        key = asyncssh.generate_private_key("ssh-ed25519")
        kwargs = {"client_keys": [(key, ca.generate_user_certificate(key, "forged", principals=[napping["id"]]))]}
    with pytest.raises(asyncssh.PermissionDenied):
        connect(napping, **kwargs)


def test_an_address_outside_allow_ssh_is_refused_with_a_message(alice, napping):
    alice("api", napping["id"], "update", json.dumps({"allowSSH": ["10.11.12.13"]}))
    try:
        banner = []

        class Client(asyncssh.SSHClient):
            def auth_banner_received(self, msg, lang):
                banner.append(msg)

        async def attempt():
            await asyncssh.connect(
                napping["host"],
                napping["sshPort"],
                username="dnanexus",
                known_hosts=None,
                agent_path=None,
                config=None,
                client_keys=[alice_key(alice)],
                client_factory=Client,
            )

        with pytest.raises(asyncssh.PermissionDenied):
            asyncio.run(attempt())
        assert "127.0.0.1 is not in the allowSSH list" in "".join(banner)
    finally:
        alice("api", napping["id"], "update", json.dumps({"allowSSH": ["127.0.0.1"]}))


def test_the_browser_proxy_refuses_a_gateway_with_an_unknown_host_key(napping):
    from jobs.models import Job
    from jobs.ssh.gateway import SSHRefused, open_terminal
    from projects.models import User

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    job = Job(id=napping["id"], host=napping["host"], ssh_port=napping["sshPort"], ssh_host_key=other)
    with pytest.raises(SSHRefused, match="host key that does not match"):
        asyncio.run(open_terminal(job, User(username="alice"), "127.0.0.1", 80, 24))


def test_openssh_with_the_wrong_key_is_refused(alice, napping, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    result = subprocess.run(
        [
            "ssh",
            "-i",
            str(stranger),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={tmp_path / 'known'}",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
            str(napping["sshPort"]),
            "-l",
            "dnanexus",
            napping["host"],
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr


def test_a_terminal_session_resumes_after_a_reconnect_under_tmux(napping):
    """What a page refresh does: the browser's second connection finds the same shell (tmux)."""
    need("tmux", "sessions resume under tmux")
    from jobs.ssh.gateway import mint_certificate
    from projects.models import User

    async def session(keys, expect):
        conn = await asyncssh.connect(
            napping["host"],
            napping["sshPort"],
            username="dnanexus",
            known_hosts=None,
            agent_path=None,
            config=None,
            client_keys=[mint_certificate(napping["id"], User(username="alice"), "127.0.0.1")],
        )
        async with conn:
            process = await conn.create_process(term_type="xterm-256color", term_size=(100, 30), encoding=None)
            process.stdin.write(keys.encode())
            seen = b""
            while expect.encode() not in seen:
                seen += await asyncio.wait_for(process.stdout.read(65536), 20)
            process.close()
            return seen.decode(errors="replace")

    async def both():
        await session("export WORD=xy''zzy; echo set-$WORD\r", "set-xyzzy")
        return await session("echo again-$WORD; stty size\r", "again-xyzzy")

    out = asyncio.run(both())
    assert "again-xyzzy" in out
