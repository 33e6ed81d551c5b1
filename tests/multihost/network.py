"""Worker hosts of our own on one machine: network namespaces on a bridge, and relays to the services.

`Network` makes a bridge in the root namespace (the "LAN": the web server, PostgreSQL and Redis are
reached at its address) and, per host, a namespace joined to it by a veth pair. `cut` and `mend` take
a host's cable out of the bridge and put it back: its packets are dropped both ways, its open
connections stall (as on a real partition) rather than fail.

PostgreSQL and Redis listen on loopback on this machine; `Relay` stands for them listening on the
LAN (what a real installation does: DATABASE_URL and REDIS_URL name an address every host reaches).
"""

import asyncio
import os
import random
import shutil
import subprocess
import threading

import psutil


class NetworkUnavailable(Exception):
    """This machine cannot make network namespaces here (not root, no `ip`, no veth); says why."""


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _taken_subnets():
    out = ip("-4", "-o", "addr", "show").stdout
    return {line.split()[3].rsplit(".", 1)[0] for line in out.splitlines() if "inet " in line}


class Network:
    """A bridge with the LAN's first address, and one namespace per host on it."""

    def __init__(self, hosts):
        if os.geteuid() != 0:
            raise NetworkUnavailable("network namespaces need root (`ip netns add`)")
        if shutil.which("ip") is None:
            raise NetworkUnavailable("the `ip` program (iproute2) is not installed")
        tag = os.urandom(2).hex()
        taken = _taken_subnets()
        for _ in range(100):  # a /24 no interface of this machine is on
            prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
            if prefix not in taken:
                break
        self.bridge = f"dxw{tag}br"
        self.address = f"{prefix}.1"  # the LAN side of this machine: web, PostgreSQL, Redis
        self.hosts = {
            name: {"netns": f"dxw{tag}-{name}", "veth": f"dxw{tag}{i}", "address": f"{prefix}.{i + 1}"}
            for i, name in enumerate(hosts, start=1)
        }
        self._made = []

    def build(self):
        try:
            ip("link", "add", self.bridge, "type", "bridge")
        except subprocess.CalledProcessError as err:
            raise NetworkUnavailable(f"cannot make a bridge: {err.stderr.strip()}") from None
        self._made.append(("link", self.bridge))
        ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            try:
                ip("netns", "add", host["netns"])
            except subprocess.CalledProcessError as err:
                raise NetworkUnavailable(f"cannot make a network namespace: {err.stderr.strip()}") from None
            self._made.append(("netns", host["netns"]))
            ip("link", "add", host["veth"], "type", "veth", "peer", "name", "eth0", "netns", host["netns"])
            ip("link", "set", host["veth"], "master", self.bridge)
            ip("link", "set", host["veth"], "up")
            ip("-n", host["netns"], "link", "set", "lo", "up")
            ip("-n", host["netns"], "addr", "add", f"{host['address']}/24", "dev", "eth0")
            ip("-n", host["netns"], "link", "set", "eth0", "up")
        return self

    def cut(self, name):
        """Pull the host's cable: its packets go nowhere, its connections stall."""
        ip("link", "set", self.hosts[name]["veth"], "down")

    def mend(self, name):
        ip("link", "set", self.hosts[name]["veth"], "up")

    def prefix(self, name):
        """The command line prefix that runs a program on the host (in its namespace)."""
        return ["ip", "netns", "exec", self.hosts[name]["netns"]]

    def inode(self, name):
        return os.stat(f"/run/netns/{self.hosts[name]['netns']}").st_ino

    def pids(self, name):
        out = ip("netns", "pids", self.hosts[name]["netns"], check=False).stdout
        return [int(pid) for pid in out.split()]

    def host_of(self, proc):
        """The name of the host whose namespace `proc` or its nearest ancestor runs in, or None."""
        inodes = {self.inode(name): name for name in self.hosts}
        try:
            for each in [proc, *proc.parents()]:
                try:
                    ino = int(os.readlink(f"/proc/{each.pid}/ns/net").split("[")[1].rstrip("]"))
                except (OSError, IndexError, ValueError):
                    continue
                if ino in inodes:
                    return inodes[ino]
        except psutil.Error:
            return None
        return None

    def destroy(self):
        """Kill what runs in the namespaces, then remove them and the bridge (deleting a namespace
        deletes its veth pair). Safe to call twice, or after a partial build."""
        for name, host in self.hosts.items():
            if ("netns", host["netns"]) in self._made:
                for pid in self.pids(name):
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
        for kind, name in reversed(self._made):
            if kind == "netns":
                ip("netns", "del", name, check=False)
            else:
                ip("link", "del", name, check=False)
        self._made = []


class Relay:
    """TCP relays from the LAN's address to services on loopback, in a thread of the test process."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._servers = []
        self._writers = set()

    def start(self):
        self._thread.start()
        return self

    def forward(self, listen, target):
        """Relay connections to `listen` (host, port) on to `target` (host, port)."""

        async def serve():
            return await asyncio.start_server(lambda r, w: self._pair(r, w, target), *listen)

        self._servers.append(asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10))

    async def _pair(self, reader, writer, target):
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def stop(self):
        async def close():
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
