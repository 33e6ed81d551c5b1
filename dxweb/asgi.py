"""ASGI entry point: Django for pages, a lean Django handler for the API, Channels for websockets."""

import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dxweb.settings")
get_asgi_application()  # django.setup(); the handlers are made below

import asyncio  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from asgiref.sync import ThreadSensitiveContext  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.db import connections  # noqa: E402

from .middleware import DXErrorMiddleware  # noqa: E402

# API calls (/<class-or-id>/<method>, never a trailing slash) and the bare-view baseline of
# bench/api.py (which must take the same path as what it is compared with).
API_PATH = re.compile(r"^/(?:(?:system|[a-z]+(?:-[^/]+)?)/[A-Za-z_]+|bench/json)$")
# Signed transfer URLs and the plain PUT/GET baseline of bench/transfer.py.
TRANSFER_PATH = re.compile(r"^/(?:transfer|bench/blob)/")


class PooledThreads:
    """Run each request's sync code (middleware, view) on one of a fixed pool of long-lived threads.

    Django's default is a new thread per request, which opens a new database connection per request
    (on PostgreSQL a new server process: milliseconds of CPU on both sides). A pooled thread keeps
    its connection between requests (CONN_MAX_AGE), and a burst waits for a free thread instead of
    starting hundreds. `threads=0`: Django's default.
    """

    def __init__(self, threads=0):
        super().__init__()
        self.threads = threads
        self._free = None
        self.executors = []

    def close_connections(self, timeout=10):
        """Close every pooled thread's database connection (kept between requests), e.g. before the
        database is dropped; each thread does so after its current request."""
        for executor in self.executors:
            if executor._threads:  # a thread that never ran has no connection (nor a thread yet)
                executor.submit(connections.close_all).result(timeout)  # the thread's own

    async def __call__(self, scope, receive, send):
        if not self.threads:
            return await super().__call__(scope, receive, send)
        if self._free is None:
            self._free = asyncio.Queue()
            for n in range(self.threads):
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-{n}")
                self.executors.append(executor)
                self._free.put_nowait(executor)
        executor = await self._free.get()
        try:
            # Every thread-sensitive call of this request (signals, the view) runs on that one thread.
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self._free.put_nowait(executor)


class PageHandler(PooledThreads, ASGIHandler):
    """Django as configured (every middleware), for the pages."""

    name = "page"


class TokenAPIHandler(PooledThreads, ASGIHandler):
    """Django without the page middleware, for callers that authenticate by token or signed URL.

    Sessions, CSRF, messages and static files mean nothing to the API, and each sync-only
    middleware costs a thread hop per request (bench/api.py measures the difference). Transfers
    keep Django's thread per request: a long part upload must not hold one of the few API threads.
    Only the error boundary stays (dxweb/middleware.py): it runs when a view raises, not per request.
    """

    name = "api"

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._exception_middleware = [DXErrorMiddleware(get_response).process_exception]
        self._middleware_chain = convert_exception_to_response(get_response)


api_asgi_app = TokenAPIHandler(threads=settings.DXWEB_API_THREADS)
transfer_asgi_app = TokenAPIHandler()
page_asgi_app = PageHandler(threads=settings.DXWEB_PAGE_THREADS)


async def http_application(scope, receive, send):
    path = scope["path"]
    if API_PATH.match(path):
        app = api_asgi_app
    elif TRANSFER_PATH.match(path):
        app = transfer_asgi_app
    else:
        app = page_asgi_app
    await app(scope, receive, send)


from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

import jobs.routing  # noqa: E402

from .websockets import WebsocketGuard, route_not_found  # noqa: E402

websocket_urlpatterns = [*jobs.routing.websocket_urlpatterns]
if settings.DXWEB_BENCH_VIEWS:  # bench/logs.py's echo baseline (never in production)
    import bench.routing  # noqa: E402

    websocket_urlpatterns += bench.routing.websocket_urlpatterns
websocket_urlpatterns.append(re_path(r"", route_not_found))  # last: 4404, not a server error

application = ProtocolTypeRouter(
    {
        "http": http_application,
        # Session authentication is per route (jobs/routing.py): `dx watch` sockets carry a token instead.
        # The guard checks the Origin (scheme, host and port) and caps the sockets per client address.
        "websocket": WebsocketGuard(URLRouter(websocket_urlpatterns)),
    }
)
