"""Settings for every environment. With nothing set, the platform runs on embedded defaults:
SQLite and a filesystem Celery broker under var/, so a fresh machine needs no server."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured


class Env(environ.Env):
    """django-environ, made strict where a typo would otherwise go unnoticed: it reads any word it does
    not know as a false boolean and reports a bad number without naming the variable. A blank variable
    (`NAME=` in an env file) counts as unset, so it gets its default or, when required, stops the start."""

    BOOLEAN_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if raw is not None and not raw.strip():
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable (it is empty)")
            return self.parse_value(default, cast) if parse_default else default
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as error:
            raise ImproperlyConfigured(f"{var}={raw!r} is not a valid value: {error}") from None

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool and str(value).strip().lower() not in cls.BOOLEAN_WORDS:
            raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")
        return super().parse_value(value, cast)


env = Env()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env.str("LUMBAR_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-local-development-key-not-for-production")
# Off unless asked for (DEBUG=true): with it on, a 404 lists every URL pattern and a 500 shows the traceback.
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", cast=str.strip, default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", cast=str.strip, default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "diagnosis",
    "ml",
    "csp",
]

MIDDLEWARE = [
    "lumbar_platform.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Static files are answered here, before the session and the rest, with or without DEBUG.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "lumbar_platform.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "lumbar_platform.middleware.TimeZoneMiddleware",
    # Every saved change to the records (diagnosis.models' `history`) is stamped with the request's user;
    # an API token's user too, since DRF hands the user it authenticated back to this request.
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it turns a locked-out log-in into diagnosis.lockout's answer.
    "axes.middleware.AxesMiddleware",
]

# Everything the pages load comes from this origin, and no inline script, style or event handler runs:
# the templates keep theirs in static/. The API docs page adds what Swagger UI needs (diagnosis/api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "lumbar_platform.urls"
WSGI_APPLICATION = "lumbar_platform.wsgi.application"
ASGI_APPLICATION = "lumbar_platform.asgi.application"

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
            ],
        },
    },
]

_SQLITE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": {**env.db_url("DATABASE_URL", default=_SQLITE_URL), "CONN_MAX_AGE": 60}}
# A kept connection the database dropped (restart, terminated backend) is replaced before it fails a
# request; the worker opens a fresh one around each task anyway (Celery's Django fixup).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: wait for locks instead of failing,
    # and take the write lock at the start of a transaction so two writers never deadlock.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: PostgreSQL compiles any query whose estimate passes jit_above_cost, and the
    # worklist's counts (20,000 cases) spent 20 to 35 ms compiling a query that runs in 70. The pages
    # and lists answer in milliseconds; compiling never pays back here.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a locked-out account or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, loading a session's user and their clinicians-group membership in one query.
    "diagnosis.backends.ClinicianModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# `make run` collects nothing: WhiteNoise serves straight from the apps' and the project's static folders
# (production serves what collectstatic wrote instead), so its warning that STATIC_ROOT is missing is noise.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message=r"No directory at: ")
# Scans are patient data: MEDIA_ROOT is never served by a URL, only through permission-checked views.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
MEDIA_URL = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Celery: Redis when CELERY_BROKER_URL is set, otherwise Kombu's filesystem transport under var/.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_FILESYSTEM_DIR = Path(env.str("CELERY_FILESYSTEM_DIR", default=str(VAR_DIR / "celery")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_FILESYSTEM_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FILESYSTEM_DIR / "queue"),
        "data_folder_out": str(CELERY_FILESYSTEM_DIR / "queue"),
        "processed_folder": str(CELERY_FILESYSTEM_DIR / "processed"),
        "control_folder": str(CELERY_FILESYSTEM_DIR / "control"),
        "store_processed": False,
    }
else:
    # A message not acknowledged within this time (a killed worker) is delivered again. A broker host
    # that does not answer fails a publish within seconds, so an upload never hangs on it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
        "socket_connect_timeout": 2,
    }
    # Fetch a task only when a pool process is free: a killed worker then holds no message it had not
    # started, which Redis would give back only after the visibility timeout (Redis only, hence here).
    CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Each pool process loads and traces the active model at its start (seconds), before it takes a task.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 60
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=180)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task that cannot be published is not lost (the prediction row is its outbox, see the dispatcher
# below), so the web process gives up on an absent broker after about a second instead of waiting.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_TIMEZONE = TIME_ZONE
# Each claim of a prediction by a worker counts; one claimed more often than this (a scan that kills or
# stalls the worker each time) fails instead of going round the sweep for ever.
LUMBAR_PREDICTION_MAX_ATTEMPTS = env.int("LUMBAR_PREDICTION_MAX_ATTEMPTS", default=3)
# Each pool process loads and traces the active model when it starts, so the first upload is as fast as
# the next; off, it loads the model on its first task instead (less memory for an idle worker).
LUMBAR_WORKER_WARM_UP = env.bool("LUMBAR_WORKER_WARM_UP", default=True)
# How often beat has the worker send the tasks of predictions whose broker was away when they were queued.
LUMBAR_DISPATCH_INTERVAL_SECONDS = env.int("LUMBAR_DISPATCH_INTERVAL_SECONDS", default=5)
CELERY_BEAT_SCHEDULE = {
    "dispatch-predictions": {
        "task": "diagnosis.tasks.dispatch_predictions",
        "schedule": LUMBAR_DISPATCH_INTERVAL_SECONDS,
        # A run still queued after ten intervals is dropped, so a stopped worker does not come back to a
        # pile of them; ten, so that one still outlasts a backlog of predictions queued ahead of it.
        "options": {"expires": 10 * LUMBAR_DISPATCH_INTERVAL_SECONDS},
    },
    "sweep-stale-predictions": {
        "task": "diagnosis.tasks.sweep_stale_predictions",
        "schedule": env.int("LUMBAR_SWEEP_INTERVAL_SECONDS", default=60),
    },
    # API authentication checks only the presented token's expiry (diagnosis.api.authentication).
    "purge-expired-tokens": {"task": "diagnosis.tasks.purge_expired_tokens", "schedule": 3600},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header turns a missing login into a 401, not a 403.
        "diagnosis.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "diagnosis.api.pagination.Pagination",
    "PAGE_SIZE": 25,
    "EXCEPTION_HANDLER": "diagnosis.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lumbar platform API",
    "DESCRIPTION": "Lumbar-spine MRI classification: patients, cases, scans, predictions and reviews. "
    "Errors are JSON objects {message, errors} with a 4xx status, or a 500 whose message names the request "
    "id (also in the X-Request-ID header) under which the server logged the failure.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "diagnosis.models.Case.Status",
        "PredictionStatusEnum": "diagnosis.models.Prediction.Status",
        "LabelEnum": "diagnosis.models.Prediction.Label",
        "PatientCheckEnum": "diagnosis.models.Series.PatientCheck",
    },
}

# A cache every process shares: Redis when CACHE_URL names one, otherwise files under var/, which needs no
# server.
CACHES = {"default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}

# API tokens (django-rest-knox): stored hashed, sent as `Authorization: Token <token>`, ended by their
# expiry, by logout, and by a password change or deactivation of their user (diagnosis.signals).
LUMBAR_TOKEN_TTL_HOURS = env.int("LUMBAR_TOKEN_TTL_HOURS", default=10)
REST_KNOX = {"TOKEN_TTL": timedelta(hours=LUMBAR_TOKEN_TTL_HOURS), "AUTH_HEADER_PREFIX": "Token"}

# Log-in throttling (django-axes, failures kept in the database every process shares): failures are
# counted per account whatever the address, and per address whatever the account. Either count reaching
# the limit within the window locks log-ins on the login page, the admin and the token endpoint alike.
LUMBAR_LOGIN_MAX_FAILURES = env.int("LUMBAR_LOGIN_MAX_FAILURES", default=5)
LUMBAR_LOGIN_WINDOW_SECONDS = env.int("LUMBAR_LOGIN_WINDOW_SECONDS", default=300)
AXES_FAILURE_LIMIT = LUMBAR_LOGIN_MAX_FAILURES
AXES_COOLOFF_TIME = timedelta(seconds=LUMBAR_LOGIN_WINDOW_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts made while locked out are not counted: whoever keeps retrying is let in once the window has
# passed since the last counted failure, not locked out for ever.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success keeps the failures: resetting would also wipe those made against other accounts from the same
# address, so one's own account could reset the count between guesses at someone else's.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "diagnosis.lockout.lockout_response"
# How many reverse proxies in front append to X-Forwarded-For; 0 when clients connect directly.
LUMBAR_TRUSTED_PROXIES = env.int("LUMBAR_TRUSTED_PROXIES", default=0)
AXES_CLIENT_IP_CALLABLE = "diagnosis.lockout.client_address"
for _name in ("LUMBAR_TOKEN_TTL_HOURS", "LUMBAR_LOGIN_MAX_FAILURES", "LUMBAR_LOGIN_WINDOW_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1, got {globals()[_name]}")
if LUMBAR_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured(f"LUMBAR_TRUSTED_PROXIES must be 0 or more, got {LUMBAR_TRUSTED_PROXIES}")

# History (django-simple-history): reverting a record from its admin history page would bypass the
# services' rules (a review is amended by a new version, never rewritten), so the admin only shows it.
SIMPLE_HISTORY_REVERT_DISABLED = True

# Uploads: refuse big files and decompression bombs before decoding them.
LUMBAR_MAX_UPLOAD_BYTES = env.int("LUMBAR_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
LUMBAR_MAX_IMAGE_PIXELS = env.int("LUMBAR_MAX_IMAGE_PIXELS", default=40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# DICOM network. `manage.py dicom_receiver` listens on LUMBAR_DICOM_PORT as LUMBAR_DICOM_AE_TITLE; callers
# must address that title and, when LUMBAR_DICOM_ALLOWED_CALLERS lists AE titles, be one of them. A study
# whose PatientID names a registered patient without an open case gets a new case owned by the account
# LUMBAR_DICOM_RECEIVING_USER names; without one it waits in the incoming list. Results (a DICOM SR and the
# heatmap as Secondary Capture) go to the PACS at LUMBAR_PACS_HOST:LUMBAR_PACS_PORT, AE LUMBAR_PACS_AE_TITLE.
LUMBAR_DICOM_AE_TITLE = env.str("LUMBAR_DICOM_AE_TITLE", default="LUMBAR")
LUMBAR_DICOM_PORT = env.int("LUMBAR_DICOM_PORT", default=11112)
LUMBAR_DICOM_ALLOWED_CALLERS = env.list("LUMBAR_DICOM_ALLOWED_CALLERS", cast=str.strip, default=[])
LUMBAR_DICOM_RECEIVING_USER = env.str("LUMBAR_DICOM_RECEIVING_USER", default="")
LUMBAR_PACS_HOST = env.str("LUMBAR_PACS_HOST", default="")
LUMBAR_PACS_PORT = env.int("LUMBAR_PACS_PORT", default=104)
LUMBAR_PACS_AE_TITLE = env.str("LUMBAR_PACS_AE_TITLE", default="PACS")
for _title in (LUMBAR_DICOM_AE_TITLE, LUMBAR_PACS_AE_TITLE, *LUMBAR_DICOM_ALLOWED_CALLERS):
    if not 0 < len(_title.strip()) <= 16 or "\\" in _title:
        raise ImproperlyConfigured(f"{_title!r} is not a DICOM AE title (1 to 16 characters, no backslash)")
for _name in ("LUMBAR_DICOM_PORT", "LUMBAR_PACS_PORT"):
    if not 0 < globals()[_name] < 65536:
        raise ImproperlyConfigured(f"{_name} must be a TCP port (1 to 65535), got {globals()[_name]}")

# Predictions left queued or running longer than this are queued again by the sweep.
LUMBAR_PREDICTION_STALE_SECONDS = env.int("LUMBAR_PREDICTION_STALE_SECONDS", default=600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The request id is also in the X-Request-ID header and in the message of an API 500.
    "filters": {"request_id": {"()": "lumbar_platform.middleware.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # WeasyPrint logs each rendering step at INFO; its warnings (an image it could not load) still show.
    "loggers": {"weasyprint": {"level": "WARNING"}},
}
