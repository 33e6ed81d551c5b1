"""Terminals into a held job: keystroke echo round trip and bulk output, browser path vs direct SSH clients.

One server, one job held for debugging (its sandbox kept, an SSH gateway for it), and, in
interleaved rounds against the same gateway and the same tmux session:

- `browser`: what the Debug page does: a websocket to `/ws/jobs/<id>/terminal/` with a logged-in
  session cookie; keystrokes as `{"type": "input"}` frames, output as binary frames, acks as
  the page sends them (`{"type": "ack"}` every 64 kB rendered or 100 ms, here received);
- `asyncssh`: a direct asyncssh client to the gateway (a certificate from the platform CA, a pty);
- `openssh`: OpenSSH `ssh -tt` with the launcher's key, as `dx ssh` runs it;
- `ws echo`: one websocket round trip to a bare echo consumer on the same server (no auth, no DB).

Keystroke echo: type one character, time until the shell's echo of it arrives (the line is
cleared every 50 keys). Target: browser p50 ≤ 2 × asyncssh p50 + ws echo p50.

Bulk output: `head -c 50M /dev/urandom | base64` typed into the shell, then an end marker:
time until the marker arrives (through tmux, which redraws the screen rather than forwarding
every byte; both paths go through the same tmux). The largest unacked backlog the browser
client saw is reported against the consumer's 512 kB bound. Target: browser ≥ 0.5 × asyncssh.
"""

import asyncio
import http.cookiejar
import json
import logging
import os
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import asyncssh
import websocket

from .common import live_server, percentile, table, write_results
from .jobs import Client, new_applet

HOLD_CODE = "main() { echo held; exit 1; }"
BULK = "head -c 50M /dev/urandom | base64"
HIGH_WATER = 512 * 1024
ACK_BYTES = 64 * 1024  # what the page's terminal.js acks at
logging.getLogger("asyncssh").setLevel(logging.WARNING)


def log_in(server, handle):
    """A logged-in session: return the Cookie header value."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(server.url + "/login/").read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    body = urllib.parse.urlencode(
        {"username": handle, "password": f"{handle}-password", "csrfmiddlewaretoken": csrf}
    ).encode()
    opener.open(urllib.request.Request(server.url + "/login/", data=body, headers={"Referer": server.url + "/login/"}))
    return "; ".join(f"{c.name}={c.value}" for c in jar)


class BrowserPath:
    def __init__(self, server, job_id, cookie):
        url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/terminal/"
        self.ws = websocket.create_connection(url, timeout=60, header=[f"Cookie: {cookie}"], origin=server.url)
        self.ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        self.max_backlog = 0
        self.unacked = 0
        self.ack_every = ACK_BYTES  # as static/jobs/terminal.js: every ACK_BYTES rendered (or 100 ms)
        self.last_ack = time.monotonic()
        self.wait_for(b"\x1b", 30)  # the shell's first screen

    def send(self, text):
        self.ws.send(json.dumps({"type": "input", "data": text}))

    def read(self):
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frame = json.loads(data)
            if frame.get("type") == "status" and frame.get("state") in ("closed", "ended"):
                raise RuntimeError(f"terminal closed: {frame}")
            return b""
        self.unacked += len(data)
        self.max_backlog = max(self.max_backlog, self.unacked)
        if self.unacked >= self.ack_every or time.monotonic() - self.last_ack > 0.1:
            self.ws.send(json.dumps({"type": "ack", "bytes": self.unacked}))
            self.unacked = 0
            self.last_ack = time.monotonic()
        return data

    def wait_for(self, needle, timeout=60):
        seen, deadline = b"", time.monotonic() + timeout
        while needle not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {needle!r} after {timeout} s")
            seen = seen[-4096:] + self.read()
        return len(seen)

    def close(self):
        self.ws.close()


class AsyncsshPath:
    """A direct asyncssh client driven from a thread of its own (the benchmark's loop is synchronous)."""

    def __init__(self, job, user):
        from jobs.ssh.gateway import mint_certificate

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        key_cert = mint_certificate(job["id"], user, "127.0.0.1")

        async def open_():
            conn = await asyncssh.connect(
                job["host"],
                job["sshPort"],
                username="dnanexus",
                known_hosts=None,
                agent_path=None,
                config=None,
                client_keys=[key_cert],
            )
            proc = await conn.create_process(term_type="xterm-256color", term_size=(120, 40), encoding=None)
            return conn, proc

        self.conn, self.proc = self.run(open_())
        self.wait_for(b"\x1b", 30)

    def run(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def send(self, text):
        self.loop.call_soon_threadsafe(self.proc.stdin.write, text.encode())

    def wait_for(self, needle, timeout=60):
        async def wait():
            seen = b""
            while needle not in seen:
                seen = seen[-4096:] + await self.proc.stdout.read(65536)

        self.run(asyncio.wait_for(wait(), timeout), timeout + 5)

    def close(self):
        self.loop.call_soon_threadsafe(self.conn.close)


class OpensshPath:
    def __init__(self, job, key_path):
        self.proc = subprocess.Popen(
            [
                "ssh",
                "-tt",
                "-i",
                str(key_path),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-p",
                str(job["sshPort"]),
                "-l",
                "dnanexus",
                job["host"],
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self.wait_for(b"\x1b", 30)

    def send(self, text):
        self.proc.stdin.write(text.encode())

    def wait_for(self, needle, timeout=60):
        seen = b""
        while needle not in seen:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("ssh ended")
            seen = seen[-4096:] + chunk

    def close(self):
        self.proc.kill()
        self.proc.wait()


def keystrokes(path, n):
    """Type n characters one at a time; return each echo's round trip (s)."""
    times = []
    path.send("\x15")  # ^U: an empty line
    for i in range(n):
        ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        t0 = time.perf_counter()
        path.send(ch)
        path.wait_for(ch.encode(), 10)
        times.append(time.perf_counter() - t0)
        if i % 50 == 49:
            path.send("\x15")
    path.send("\x15")
    return times


def bulk(path):
    """Run the bulk command; return seconds until its end marker arrives."""
    marker = f"END{secrets.token_hex(4)}"
    path.send("\x15clear\r")
    time.sleep(0.3)
    t0 = time.perf_counter()
    path.send(f"{BULK} ; echo {marker[:3]}''{marker[3:]}\r")
    path.wait_for(marker.encode(), 300)
    return time.perf_counter() - t0


def echo_rts(server, n):
    ws = websocket.create_connection(server.url.replace("http://", "ws://") + "/bench/echo/websocket", timeout=30)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            ws.send("x")
            ws.recv()
            out.append(time.perf_counter() - t0)
    finally:
        ws.close()
    return out


def stats(xs):
    return {"p50_ms": percentile(xs, 50) * 1000, "p99_ms": percentile(xs, 99) * 1000, "n": len(xs)}


def run(quick=False, keys=None, ssh_rounds=None, **_):
    tmp = Path(tempfile.mkdtemp(prefix="dxweb-bench-ssh-"))
    # This process mints certificates as the web side does: it needs the server's secret key.
    secret = secrets.token_urlsafe(40)
    os.environ.update(DXWEB_SECRET_KEY=secret, DXWEB_DATA_DIR=str(tmp / "client"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
    import django

    django.setup()
    from projects.models import User

    keys = keys or (40 if quick else 100)
    rounds = ssh_rounds or (2 if quick else 4)
    key_path = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_path)], check=True)

    with live_server(DXWEB_SECRET_KEY=secret) as server:
        token = server.user("alice")
        api = Client(server)
        api.headers["Authorization"] = f"Bearer {token}"
        api("/user-alice/update", {"sshPublicKey": key_path.with_suffix(".pub").read_text()})
        project = api("/project/new", {"name": "bench-ssh"})["id"]
        applet = new_applet(api, project, "held", HOLD_CODE)
        job_id = api(
            f"/{applet}/run",
            {"project": project, "input": {}, "allowSSH": ["127.0.0.1"], "debug": {"debugOn": ["AppInternalError"]}},
        )["id"]
        deadline = time.monotonic() + 120
        while not ((job := api(f"/{job_id}/describe", {}))["state"] == "debug_hold" and job["sshHostKey"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the job was not held: {job['state']}")
            time.sleep(0.3)
        cookie = log_in(server, "alice")
        user = User(username="alice")
        makers = {
            "browser": lambda: BrowserPath(server, job_id, cookie),
            "asyncssh": lambda: AsyncsshPath(job, user),
            "openssh": lambda: OpensshPath(job, key_path),
        }
        rec = {name: {"keys": [], "bulk_s": []} for name in makers}
        rec["ws echo"] = {"keys": []}
        backlog = 0
        for r in range(rounds):
            order = list(makers)[r % 3 :] + list(makers)[: r % 3]
            for name in order:
                path = makers[name]()
                try:
                    rec[name]["keys"] += keystrokes(path, keys)
                    if name != "openssh" or r == 0:  # one OpenSSH bulk run is enough for reference
                        rec[name]["bulk_s"].append(bulk(path))
                        if name == "browser":
                            backlog = max(backlog, path.max_backlog)
                finally:
                    path.close()
                time.sleep(0.5)
            rec["ws echo"]["keys"] += echo_rts(server, keys)
        api(f"/{job_id}/terminate", {})
    out = {"params": {"keys_per_round": keys, "rounds": rounds, "bulk": BULK}}
    for name, r in rec.items():
        out[name] = {"echo": stats(r["keys"])}
        if r.get("bulk_s"):
            out[name]["bulk_s_median"] = sorted(r["bulk_s"])[len(r["bulk_s"]) // 2]
            out[name]["bulk_runs"] = r["bulk_s"]
    b, a, e = out["browser"]["echo"]["p50_ms"], out["asyncssh"]["echo"]["p50_ms"], out["ws echo"]["echo"]["p50_ms"]
    out["echo_target_ms"] = 2 * a + e
    out["echo_met"] = b <= out["echo_target_ms"]
    out["bulk_ratio"] = out["asyncssh"]["bulk_s_median"] / out["browser"]["bulk_s_median"]
    out["bulk_met"] = out["bulk_ratio"] >= 0.5
    out["browser_max_backlog_bytes"] = backlog
    return out


def report(r):
    rows = []
    for name in ("browser", "asyncssh", "openssh", "ws echo"):
        s = r[name]["echo"]
        rows.append(
            [
                name,
                str(s["n"]),
                f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                f"{r[name]['bulk_s_median']:.2f}" if "bulk_s_median" in r[name] else "",
            ]
        )
    print(table(["path", "keys", "echo p50 ms", "echo p99 ms", "bulk s (median)"], rows))
    print(
        f"echo: browser p50 {r['browser']['echo']['p50_ms']:.2f} ms vs target 2 x asyncssh + ws echo = "
        f"{r['echo_target_ms']:.2f} ms: {'MET' if r['echo_met'] else 'MISSED'}"
    )
    print(
        f"bulk: browser {r['bulk_ratio']:.2f}x of asyncssh (target >= 0.5x): {'MET' if r['bulk_met'] else 'MISSED'}; "
        f"largest unacked backlog {r['browser_max_backlog_bytes'] / 1024:.0f} kB (bound {HIGH_WATER // 1024} kB "
        "+ one read)"
    )


def main(**opts):
    results = run(**opts)
    report(results)
    print(f"results: {write_results('ssh', results)}")
    return results
