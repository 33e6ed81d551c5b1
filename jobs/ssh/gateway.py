"""SSH into jobs (docs/ssh.md): each worker's gateway, the platform's user CA, and the browser proxy's client.

- The gateway is an asyncssh server the worker running a job starts for it (one listener per
  job that allows SSH or is held for debugging). It presents this host's persistent host key,
  accepts user `dnanexus` with the launching user's public key from an address inside the
  job's `allowSSH`, or a certificate the platform's CA minted for this job, and runs the
  session's shell inside the job's sandbox (under tmux where present, so a reconnect resumes it).
- The CA is derived from DXWEB_SECRET_KEY, which every host shares: nothing to distribute.
  The web side mints a certificate per browser session (valid DXWEB_SSH_CERT_SECONDS, for
  this job only) on a key it generates for that session; it never holds users' keys.
- The browser proxy connects to the gateway with that certificate and trusts only the host
  key the job's record names.
"""

import asyncio
import fcntl
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

import asyncssh
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from jobs.models import Job, SSHSession, State
from projects.models import now_ms

log = logging.getLogger(__name__)
# asyncssh logs every connection and channel at INFO: too chatty for a worker's log.
logging.getLogger("asyncssh").setLevel(logging.WARNING)

SSH_USER = "dnanexus"
HOME = "/home/dnanexus"
OPEN_STATES = (State.RUNNING, State.DEBUG_HOLD)
# The session's shell: tmux where the sandbox has it (a reconnect resumes the session), else bash.
LOGIN_SHELL = "if command -v tmux >/dev/null 2>&1; then exec tmux new-session -A -s dnanexus; else exec bash -l; fi"


class SSHRefused(Exception):
    """The platform will not open this SSH session; the message says why, for the user."""


# --- keys ------------------------------------------------------------------------------------


def _state_dir():
    directory = settings.DATA_DIR / "ssh"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


@functools.cache
def host_key():
    """This gateway host's key: made once, kept in DATA_DIR/ssh (each worker host has its own)."""
    path = _state_dir() / "gateway_host_ed25519_key"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="dxweb gateway")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker process of this host made it first
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(key.export_private_key())
    for _ in range(50):  # the other process may still be writing it
        try:
            return asyncssh.import_private_key(path.read_bytes())
        except (asyncssh.KeyImportError, OSError):
            time.sleep(0.1)
    return asyncssh.import_private_key(path.read_bytes())


def host_key_line():
    """The host public key as `describe` returns it in sshHostKey ("ssh-ed25519 AAAA...")."""
    algorithm, data = host_key().export_public_key().decode().split()[:2]
    return f"{algorithm} {data}"


@functools.cache
def authority():
    """The platform's user CA, derived from the secret key every host shares."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hmac.new(settings.SECRET_KEY.encode(), b"dxweb ssh user certificate authority v1", hashlib.sha256).digest()
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return asyncssh.import_private_key(pem)


def mint_certificate(job_id, user, client_ip, valid_after=None, valid_before=None):
    """A fresh key and a certificate for it, good for `job_id` only and for a short while."""
    now = int(time.time())
    key = asyncssh.generate_private_key("ssh-ed25519")
    cert = authority().generate_user_certificate(
        key,
        key_id=f"{user.dx_id} via the browser from {client_ip}",
        principals=[job_id],
        valid_after=now - 30 if valid_after is None else valid_after,
        valid_before=now + settings.DXWEB_SSH_CERT_SECONDS if valid_before is None else valid_before,
        permit_x11_forwarding=False,
        permit_agent_forwarding=False,
        permit_port_forwarding=False,
    )
    return key, cert


def address_allowed(address, allow_ssh):
    """Whether `address` is inside one of the job's allowSSH entries (IP addresses or CIDR ranges)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for entry in allow_ssh or []:
        if entry == "*":
            return True
        try:
            if ip in ipaddress.ip_network(str(entry).strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def advertised_host():
    if settings.DXWEB_SSH_HOST:
        return settings.DXWEB_SSH_HOST
    bind = settings.DXWEB_SSH_BIND
    if bind in ("", "0.0.0.0", "::"):
        return socket.getfqdn()
    return bind


# --- the gateway -----------------------------------------------------------------------------


def _auth_facts(job_id):
    close_old_connections()
    job = Job.objects.select_related("launched_by").filter(pk=job_id).first()
    if job is None:
        return None
    return {
        "state": job.state,
        "allow_ssh": list(job.allow_ssh or []),
        "user_id": job.launched_by_id,
        "key": (job.launched_by.ssh_public_key or "").strip(),
    }


def _open_session_row(job_id, user_id, via, client_ip, detail=""):
    close_old_connections()
    return SSHSession.objects.create(job_id=job_id, user_id=user_id, via=via, client_ip=client_ip, detail=detail[:255])


def _close_session_row(session_id):
    close_old_connections()
    SSHSession.objects.filter(pk=session_id, ended__isnull=True).update(ended=now_ms())


class _GatewayServer(asyncssh.SSHServer):
    def __init__(self, gateway):
        self.gateway = gateway
        self.conn = None
        self.peer = ""
        self.session_id = None
        self.user_id = None

    def connection_made(self, conn):
        self.conn = conn
        self.peer = (conn.get_extra_info("peername") or ("",))[0]
        self.gateway.connections.add(conn)

    def connection_lost(self, exc):
        self.gateway.connections.discard(self.conn)
        if self.session_id is not None:
            asyncio.get_running_loop().run_in_executor(None, _close_session_row, self.session_id)

    def password_auth_supported(self):
        return False

    def kbdint_auth_supported(self):
        return False

    def public_key_auth_supported(self):
        return True

    async def begin_auth(self, username):
        job_id = self.gateway.job_id
        facts = await asyncio.get_running_loop().run_in_executor(None, _auth_facts, job_id)
        # Certificates from the platform's CA, for this job only (the web terminal's sessions).
        keys = [f'cert-authority,principals="{job_id}" {authority().export_public_key().decode().strip()}']
        refusal = None
        if username != SSH_USER:
            refusal, keys = f"dxweb: log in as {SSH_USER}, not {username}", []
        elif facts is None or facts["state"] not in OPEN_STATES:
            refusal, keys = f"dxweb: {job_id} is no longer running", []
        elif not address_allowed(self.peer, facts["allow_ssh"]):
            refusal = (
                f"dxweb: your address {self.peer} is not in the allowSSH list of {job_id}; "
                f"`dx ssh {job_id}` adds it, or update the job's allowSSH"
            )
        elif not facts["key"]:
            refusal = "dxweb: the job's launcher has no SSH public key; run `dx ssh_config`"
        else:
            keys.append(facts["key"])
            self.user_id = facts["user_id"]
        if refusal:
            log.info("ssh %s from %s as %s: %s", job_id, self.peer, username, refusal)
            self.conn.send_auth_banner(refusal + "\r\n")
        self.conn.set_authorized_keys(asyncssh.import_authorized_keys("\n".join(keys) + "\n") if keys else None)
        return True

    async def auth_completed(self):
        if self.conn.get_key_option("principals"):
            return  # a browser session: the web side records it, with the browser's address
        row = await asyncio.get_running_loop().run_in_executor(
            None, _open_session_row, self.gateway.job_id, self.user_id, SSHSession.SSH, self.peer, "OpenSSH client"
        )
        self.session_id = row.pk


def _set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(rows, 1), max(cols, 1), 0, 0))


def _make_controlling_tty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Gateway:
    """One job's SSH listener, run by the worker running the job, on an event loop thread of its own.

    `sandbox` is the job's running SandboxProcess; `env` the job's environment for shells.
    """

    def __init__(self, job_id, sandbox, env):
        self.job_id = job_id
        self.sandbox = sandbox
        self.env = env
        self.connections = set()
        self.port = None
        self._acceptor = None
        self._children = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ssh-{job_id}", daemon=True)

    def start(self):
        """Listen, record host, port and host key on the job, and return the port."""
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(30)
        Job.objects.filter(pk=self.job_id).update(
            host=advertised_host(), ssh_port=self.port, ssh_host_key=host_key_line(), modified=now_ms()
        )
        log.info("ssh gateway for %s listening on %s:%s", self.job_id, settings.DXWEB_SSH_BIND, self.port)
        return self.port

    async def _listen(self):
        self._acceptor = await asyncssh.listen(
            settings.DXWEB_SSH_BIND,
            0,
            server_host_keys=[host_key()],
            server_factory=lambda: _GatewayServer(self),
            process_factory=self._session,
            encoding=None,
            line_editor=False,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            keepalive_interval=30,
        )
        return self._acceptor.get_port()

    def stop(self):
        """Close the listener and every session (the job has ended)."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        except Exception:  # noqa: BLE001 - the job is over either way
            log.warning("ssh gateway for %s did not close cleanly", self.job_id, exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self):
        if self._acceptor is not None:
            self._acceptor.close()
        for conn in list(self.connections):
            conn.close()
        for child in list(self._children):
            _killpg(child)
        await asyncio.sleep(0.05)

    async def _session(self, process):
        """Run the session's shell (or command) inside the job's sandbox, wired to the SSH channel."""
        command = process.command
        argv = ["/bin/sh", "-c", LOGIN_SHELL] if command is None else ["/bin/bash", "-c", command]
        term = process.get_terminal_type()
        env = {
            **self.env,
            "HOME": HOME,
            "USER": SSH_USER,
            "LOGNAME": SSH_USER,
            "SHELL": "/bin/bash",
            "TERM": term or "dumb",
        }
        env.setdefault("LANG", "C.UTF-8")
        try:
            host_argv, cwd = self.sandbox.enter_command(argv)
        except Exception as exc:  # noqa: BLE001 - the sandbox ended under us
            process.stderr.write(f"dxweb: cannot enter the job's sandbox: {exc}\r\n".encode())
            process.exit(255)
            return
        if term is None:
            await self._plain(process, host_argv, cwd, env)
        else:
            await self._pty(process, host_argv, cwd, env)

    async def _plain(self, process, argv, cwd, env):
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        self._children.add(child.pid)
        try:
            await process.redirect(stdin=child.stdin, stdout=child.stdout, stderr=child.stderr)
            code = await child.wait()
            await process.stdout.drain()
        finally:
            self._children.discard(child.pid)
            _killpg(child.pid)
        process.exit(code if code >= 0 else 128 - code)

    async def _pty(self, process, argv, cwd, env):
        loop = asyncio.get_running_loop()
        cols, rows = process.get_terminal_size()[:2]
        master, slave = os.openpty()
        _set_size(master, cols or 80, rows or 24)
        try:
            child = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_make_controlling_tty,  # noqa: PLW1509 - a few ioctl calls, no locks
            )
        finally:
            os.close(slave)
        self._children.add(child.pid)
        os.set_blocking(master, False)

        async def output():
            # Read only as fast as the client takes it: drain() waits while the channel's window is full.
            while True:
                ready = loop.create_future()
                loop.add_reader(master, lambda ready=ready: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_reader(master)
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the last process holding the terminal has gone
                    return
                if not data:
                    return
                process.stdout.write(data)
                await process.stdout.drain()

        async def keys():
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as change:
                    _set_size(master, change.width, change.height)
                    continue
                except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                    continue
                if not data:
                    return
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(master, view) :]
                    except BlockingIOError:
                        await asyncio.sleep(0.01)

        reader = loop.create_task(output())
        writer = loop.create_task(keys())
        try:
            await asyncio.wait([reader, writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            if not reader.done():
                # The client went away: the shell's terminal is hung up (tmux keeps its session).
                _killpg(child.pid, signal.SIGHUP)
                try:
                    async with asyncio.timeout(2):
                        await reader
                except (TimeoutError, asyncio.CancelledError):
                    reader.cancel()
            os.close(master)
            code = await loop.run_in_executor(None, child.wait)
            self._children.discard(child.pid)
            _killpg(child.pid)
        process.exit(code if code >= 0 else 128 - code)


def _killpg(pid, sig=signal.SIGKILL):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- the browser proxy's client ---------------------------------------------------------------


def _open_browser_row(job, user, client_ip):
    return SSHSession.objects.create(
        job=job, user=user, via=SSHSession.BROWSER, client_ip=client_ip, detail="browser terminal"
    )


async def open_terminal(job, user, client_ip, cols, rows):
    """Open a shell in `job` for `user` (already allowed to debug it); return the asyncssh client process.

    The process is in binary mode, with a pty of `cols` x `rows`; `process.dx_session` is the
    audit row, which close_terminal() stamps when the browser side ends.
    """
    if not job.host or not job.ssh_port or not job.ssh_host_key:
        raise SSHRefused(f"{job.id} has no SSH gateway yet; try again in a few seconds")
    try:
        trusted = asyncssh.import_public_key(job.ssh_host_key)
    except (asyncssh.KeyImportError, ValueError):
        raise SSHRefused(f"{job.id} records no valid SSH host key") from None
    key, cert = mint_certificate(job.id, user, client_ip)
    try:
        async with asyncio.timeout(20):  # not wait_for, which on Python 3.11 can swallow a cancellation
            conn = await asyncssh.connect(
                job.host,
                job.ssh_port,
                username=SSH_USER,
                client_keys=[(key, cert)],
                known_hosts=([trusted], [], []),
                agent_path=None,
                config=None,
                preferred_auth="publickey",
                keepalive_interval=30,
            )
    except asyncssh.HostKeyNotVerifiable:
        log.warning("the SSH gateway of %s at %s:%s presented an unknown host key", job.id, job.host, job.ssh_port)
        raise SSHRefused(
            "The job's SSH gateway presented a host key that does not match the job's record; refusing to connect"
        ) from None
    except asyncssh.PermissionDenied:
        raise SSHRefused(f"The SSH gateway of {job.id} refused the session") from None
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise SSHRefused(f"Could not reach the SSH gateway of {job.id}: {exc}") from None
    try:
        process = await conn.create_process(term_type="xterm-256color", term_size=(cols, rows), encoding=None)
    except (OSError, asyncssh.Error) as exc:
        conn.close()
        raise SSHRefused(f"The SSH gateway of {job.id} would not start a shell: {exc}") from None
    process.dx_session = await sync_to_async(_open_browser_row)(job, user, client_ip)
    return process


async def close_terminal(process):
    """End a browser session: close the SSH connection and stamp the audit row."""
    try:
        process.close()
        process.channel.get_connection().close()
    except Exception:  # noqa: BLE001 - already closed
        pass
    session = getattr(process, "dx_session", None)
    if session is not None:
        await sync_to_async(_close_session_row)(session.pk)
