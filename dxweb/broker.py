"""kombu's filesystem transport (the embedded broker) with messages that appear whole, and a worker
that wakes when one lands.

kombu writes each message straight into the queue folder under its final name, and a worker
polling the folder can pick the file up before the write is done: it reads an empty or partial
message, the JSON fails to parse, and the worker stops ("Unrecoverable error") with the message
lost. Here a message is written under a name the consumer ignores and renamed into place, which
is atomic within a folder.

kombu's consumer looks in the folders, then sleeps `polling_interval` (DXWEB_BROKER_POLL_SECONDS,
0.05 s) before it looks again: every job started by a message waited 0-50 ms for the worker to see
it. Here the consumer waits on an inotify watch of the folders instead, for at most that long: a
message renamed into place wakes it at once. Where inotify is not there (another kernel, its limits
reached), it sleeps as kombu does.
"""

import logging
import os
import uuid
from queue import Empty
from time import monotonic

from inotify_simple import INotify, flags
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: `_get` matches names whose text after the first dot is "<queue>.msg".
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


log = logging.getLogger(__name__)

# A message renamed into place (Channel._put), or written in directly by another writer.
WAKING = flags.MOVED_TO | flags.CLOSE_WRITE


class FolderWatch:
    """An inotify watch of the broker's folders: wait(seconds) returns once a file lands, or after `seconds`."""

    def __init__(self, folders):
        self.inotify = INotify()
        try:
            for folder in folders:
                self.inotify.add_watch(folder, WAKING)
        except OSError:
            self.inotify.close()
            raise

    def wait(self, seconds):
        self.inotify.read(timeout=max(0, round(seconds * 1000)))  # drains what came meanwhile

    def close(self):
        self.inotify.close()


class FilesystemTransport(filesystem.Transport):
    Channel = Channel
    watch = None  # the FolderWatch, made at the first drain; False where inotify failed

    def _folder_watch(self):
        if self.watch is None:
            folders = sorted(
                {
                    str(f)
                    for ch in self.channels
                    for f in (ch.data_folder_in, ch.control_folder)
                    if f and os.path.isdir(f)
                }
            )
            try:
                self.watch = FolderWatch(folders) if folders else False
            except OSError as exc:
                log.warning(
                    "the embedded broker polls its folders every %s s: no inotify (%s)", self.polling_interval, exc
                )
                self.watch = False
        return self.watch

    def drain_events(self, connection, timeout=None):
        """kombu's loop (look in the queues; when all are empty, pause before looking again), whose pause
        ends as soon as a message lands in a watched folder. The watch is made before the first look,
        so a message that lands between a look and the pause ends the pause at once."""
        watch = self._folder_watch()
        if not watch:
            return super().drain_events(connection, timeout)
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pause = self.polling_interval
                if timeout is not None:
                    left = timeout - (monotonic() - started)
                    if left <= 0:
                        raise TimeoutError from None
                    pause = left if pause is None else min(pause, left)
                if pause is not None:
                    watch.wait(pause)

    def close_connection(self, connection):
        if self.watch:
            self.watch.close()
        self.watch = None
        return super().close_connection(connection)
