"""Open `connections` connections to the API server and hold them all; send a request on each and
count the ones the server answers and the ones refused; then close them. Then, through dxpy as any
job does, upload a report and return it.

The flood runs before dxpy.run(), which opens a connection of its own (it describes the job) and
keeps it: no other connection of the job to the API is open while the flood counts."""

import json
import os
import socket

import dxpy


def connect(address):
    """A connection, or None when it was reset before connect() returned."""
    try:
        return socket.create_connection(address, timeout=60)
    except ConnectionResetError:
        return None


def reply_of(sock, request):
    """The server's whole reply to `request`, or None when the connection is reset or ends unanswered."""
    if sock is None:
        return None
    try:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    except OSError:
        return None
    return b"".join(chunks) or None


def flood(connections):
    host, port = os.environ["DX_APISERVER_HOST"], int(os.environ["DX_APISERVER_PORT"])
    held = [connect((host, port)) for _ in range(connections)]
    print(f"connected {sum(sock is not None for sock in held)} of {connections} to {host}:{port}")
    request = f"GET /relay-probe HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    replies = [reply_of(sock, request) for sock in held]
    answered = sum(1 for reply in replies if reply is not None and reply.startswith(b"HTTP/"))
    for sock in held:
        if sock is not None:
            sock.close()
    return answered, len(held) - answered


with open("job_input.json") as fh:
    ANSWERED, REFUSED = flood(json.load(fh)["connections"])


@dxpy.entry_point("main")
def main(connections):
    report = f"{ANSWERED} answered, {REFUSED} refused\n"
    print(report, end="")
    uploaded = dxpy.upload_string(report, name="flood-report.txt", wait_on_close=True)
    return {"answered": ANSWERED, "refused": REFUSED, "report": dxpy.dxlink(uploaded)}


dxpy.run()
