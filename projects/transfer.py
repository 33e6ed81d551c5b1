"""Signed upload (PUT) and download (GET, with Range) URLs for file bytes.

The dx client sends these requests without any Authorization header, so the
URL itself carries a signature over what it allows.
"""

import asyncio
import re
import time

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from dxweb.errors import (
    DXError,
    InvalidAuthentication,
    InvalidInput,
    MethodNotAllowed,
    PayloadTooLarge,
    ResourceNotFound,
    no_sniffing,
)

from . import actions, permissions
from .models import ApiToken, DataObject, FilePart, Level
from .permissions import Principal

UPLOAD_SALT = "dxweb.upload"
DOWNLOAD_SALT = "dxweb.download"
CHUNK = 1024 * 1024
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def absolute(request, path):
    return request.build_absolute_uri(path)


def _sign(grant, salt, ttl=None):
    """Sign what a URL allows, with the moment (epoch s) it stops; return (token, expiry in epoch ms)."""
    expires = time.time() + (ttl or settings.DXWEB_TRANSFER_URL_TTL)
    return signing.dumps({**grant, "e": int(expires)}, salt=salt, compress=True), int(expires) * 1000


def upload_url(request, file_id, index, size, md5):
    """Return (url, expiry in epoch ms) for the PUT of one part."""
    token, expires = _sign({"f": file_id, "i": index, "s": size, "m": md5}, UPLOAD_SALT)
    return absolute(request, reverse("transfer-upload", args=[token])), expires


def download_url(request, file_id, filename, ttl=None, token_id=None, project=None):
    """Return (url, expiry in epoch ms) for a GET of a closed file's bytes.

    With `token_id` (the API's `preauthenticated: false`), the URL is good only while that token is
    alive and its holder can still VIEW the file (each GET checks), for at most
    DXWEB_DOWNLOAD_URL_MAX_TTL: the dx client fetches such a URL once per file and never renews it, so a
    download that lasts longer than a short TTL would break part-way. A job's token dies with the job,
    and its URLs with it. Without, the URL is good for anyone who holds it, for `ttl` seconds
    (a preauthenticated URL) or DXWEB_TRANSFER_URL_TTL (the pages' downloads).
    """
    grant = {"f": file_id}
    if token_id is not None:
        grant.update(t=token_id, p=project)
        ttl = settings.DXWEB_DOWNLOAD_URL_MAX_TTL
    token, expires = _sign(grant, DOWNLOAD_SALT, ttl)
    return absolute(request, reverse("transfer-download", args=[token, filename])), expires


def _unsign(token, salt):
    try:
        grant = signing.loads(token, salt=salt)
    except signing.BadSignature:
        raise ResourceNotFound("This transfer URL is not valid") from None
    if not isinstance(grant, dict) or grant.get("e", 0) < time.time():
        raise InvalidInput("This transfer URL has expired; ask the API for a new one")
    return grant


def _check_holder(grant):
    """A token-bound download URL: its token must still exist and still reach the file (one query each)."""
    if "t" not in grant:
        return
    token = ApiToken.objects.select_related("user").filter(pk=grant["t"], user__is_active=True).first()
    if token is None:
        raise InvalidAuthentication("The token this download URL was made for has been revoked")
    permissions.access_object(Principal.of_token(token), grant["f"], Level.VIEW, project=grant.get("p"), cls="file")


def _error(err):
    """A refused transfer: the API's error body; bad input is a plain 400 here (no API method ran)."""
    return no_sniffing(JsonResponse(err.to_dict(), status=400 if err.status == 422 else err.status))


@csrf_exempt
def upload(request, token):
    """PUT one part's bytes."""
    try:
        if request.method != "PUT":
            raise MethodNotAllowed("Upload URLs take PUT")
        grant = _unsign(token, UPLOAD_SALT)
        declared = request.headers.get("Content-Length")
        if grant["s"] is not None and declared is not None and declared.isdigit() and int(declared) != grant["s"]:
            raise InvalidInput(f"Content-Length {declared} does not match the announced part size {grant['s']}")
        if declared is not None and declared.isdigit() and int(declared) > settings.DXWEB_MAX_PART_SIZE:
            raise PayloadTooLarge(f"A part holds at most {settings.DXWEB_MAX_PART_SIZE} bytes")
        size = actions.store_part(grant["f"], grant["i"], grant["s"], grant["m"], request)
        return no_sniffing(JsonResponse({"index": grant["i"], "size": size}))
    except DXError as err:
        return _error(err)


def parse_range(header, size):
    """Return (start, end inclusive) for a single `bytes=a-b` range, or None for the whole file.

    A Range this server does not take (other units, several ranges, last before first) is
    ignored, as RFC 9110 allows; one that selects no byte of the file raises ValueError (416).
    """
    if not header:
        return None
    match = RANGE_RE.match(header.strip())
    if not match or (match[1] == "" and match[2] == ""):
        return None
    if match[1] == "":
        length = int(match[2])
        if length == 0 or size == 0:
            raise ValueError(f"The range {header} selects no byte of a {size}-byte file")
        return max(size - length, 0), size - 1
    start = int(match[1])
    if match[2] and int(match[2]) < start:
        return None
    if start >= size:
        raise ValueError(f"The range {header} starts past the end of a {size}-byte file")
    return start, min(int(match[2]) if match[2] else size - 1, size - 1)


async def _stream(segments):
    """Yield the bytes of [(blob, start, length)...] without holding more than a chunk."""
    for blob, start, length in segments:
        handle = await asyncio.to_thread(default_storage.open, blob, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = length
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)


def segments_for(parts, start, end):
    """Map a byte range of the whole file onto the parts' blobs."""
    out = []
    for part in parts:
        p_start, p_end = part.offset, part.offset + part.size - 1
        if part.size == 0 or p_end < start or p_start > end:
            continue
        lo, hi = max(start, p_start), min(end, p_end)
        out.append((part.blob, lo - p_start, hi - lo + 1))
    return out


def download(request, token, filename):
    """GET a closed file's bytes; a single Range is honoured with 206."""
    try:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed("Download URLs take GET")
        grant = _unsign(token, DOWNLOAD_SALT)
        _check_holder(grant)
        file = DataObject.objects.filter(pk=grant["f"], state=DataObject.CLOSED).first()
        if file is None:
            raise ResourceNotFound("The file is gone or not closed")
    except DXError as err:
        return _error(err)
    size = file.size
    try:
        byte_range = parse_range(request.headers.get("Range"), size)
    except ValueError as exc:
        response = no_sniffing(JsonResponse(InvalidInput(str(exc)).to_dict(), status=416))
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = byte_range or (0, size - 1)
    length = max(end - start + 1, 0)
    if request.method == "HEAD" or length == 0:
        response = HttpResponse(b"", status=206 if byte_range else 200)
    else:
        parts = list(FilePart.objects.filter(file=file).order_by("index"))
        response = StreamingHttpResponse(_stream(segments_for(parts, start, end)), status=206 if byte_range else 200)
    response["Content-Type"] = file.media or "application/octet-stream"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    if byte_range:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return no_sniffing(response)
