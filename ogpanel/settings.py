"""ogpanel settings, read from the environment.

Every helper below fails loudly on a value it cannot parse: a typo in a
deployment's environment should stop the process, not quietly fall back.
"""

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from ogpanel.logs import JSON_FORMATTER

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_networks(name: str, default: str = "") -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """ "10.0.0.0/8, 127.0.0.1" -> networks (an address is a network of one), each checked."""
    networks = []
    for entry in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not an IP address or CIDR") from None
    return networks


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def database_from_url(url: str) -> dict:
    """DATABASE_URL for PostgreSQL (postgres:// or postgresql://) or SQLite (sqlite:///path)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:]) or ":memory:"}
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"DATABASE_URL scheme must be postgresql:// or sqlite:///, got {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


DEBUG = env_bool("OGPANEL_DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when OGPANEL_DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-OGPANEL_DEBUG-1"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "ogpanel",
]

MIDDLEWARE = [
    "ogpanel.middleware.ForwardedProtoMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "ogpanel.middleware.HostileInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "ogpanel.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "ogpanel.middleware.RequestIdMiddleware",
    "ogpanel.middleware.HtmxLoginRedirectMiddleware",
    "ogpanel.middleware.IdleSessionMiddleware",
    "ogpanel.middleware.SecondFactorMiddleware",
    "ogpanel.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "ogpanel.urls"
WSGI_APPLICATION = "ogpanel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ogpanel.context_processors.panel",
            ],
        },
    }
]

VAR_DIR = Path(env_str("OGPANEL_VAR_DIR", str(BASE_DIR / "var")))
if env_str("DATABASE_URL"):
    DATABASES = {"default": database_from_url(env_str("DATABASE_URL"))}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "ogpanel.sqlite3"}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # IMMEDIATE takes the write lock at BEGIN, so concurrent audit appends queue instead of
    # failing with "database is locked" half-way through a transaction. WAL: a commit is one
    # append and fsync of the log rather than a rollback journal's several (every operation
    # commits three times: attempt, result, session), and readers never wait for a writer.
    # synchronous stays FULL: a committed attempt must survive a power cut.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared state between panel processes (rate-limit buckets, cached listings) lives in the cache.
# Without REDIS_URL it is per-process memory, which is right for the single-process demo only.
CACHES: dict[str, dict[str, Any]]
if env_str("REDIS_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env_str("REDIS_URL")}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ogpanel"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Security headers. TLS terminates in front of the panel (see README); these assume it does.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz(/watcher)?$"]  # container health checks speak plain HTTP from inside
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("OGPANEL_BEHIND_PROXY", False) else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# Preloading commits the whole parent domain to HTTPS in every browser: the firm's call, not the panel's.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
OGPANEL_SESSION_IDLE_SECONDS = env_int("OGPANEL_SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_COOKIE_AGE = OGPANEL_SESSION_IDLE_SECONDS
SESSION_SAVE_EVERY_REQUEST = True  # the cookie follows use; IdleSessionMiddleware decides what "use" is
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("OGPANEL_LOG_LEVEL", "INFO")},
}

# --- ogpanel ---------------------------------------------------------------------------------
# Highest numbered subaccount. Kalshi's older spec and FIX say 32; newer versions allow 63.
OGPANEL_MAX_SUBACCOUNT = env_int("OGPANEL_MAX_SUBACCOUNT", 32, minimum=0, maximum=63)
# Rate-limit tier of the API keys (basic, advanced, premier, paragon, prime).
OGPANEL_KALSHI_TIER = env_str("OGPANEL_KALSHI_TIER", "basic")
# Connect and read timeouts for every exchange call, in seconds.
OGPANEL_CONNECT_TIMEOUT = env_float("OGPANEL_CONNECT_TIMEOUT", 3.0)
OGPANEL_READ_TIMEOUT = env_float("OGPANEL_READ_TIMEOUT", 10.0)
# How long one subaccount's listing is shared between viewers, in seconds.
OGPANEL_LIST_CACHE_SECONDS = env_float("OGPANEL_LIST_CACHE_SECONDS", 2.0)
# Dashboard self-refresh interval, in seconds.
OGPANEL_REFRESH_SECONDS = env_int("OGPANEL_REFRESH_SECONDS", 5, minimum=1)
# How often an open dashboard checks its change stamp (/live), in seconds; the table is fetched only
# when the stamp changed. 0.5 s keeps a trip's way to the screen under a second with the stream on.
OGPANEL_LIVE_SECONDS = env_float("OGPANEL_LIVE_SECONDS", 0.5, minimum=0.1)
# Ops and admins must pass a TOTP second factor (and enrol one first) before any page.
OGPANEL_REQUIRE_2FA = env_bool("OGPANEL_REQUIRE_2FA", False)
OTP_TOTP_ISSUER = "ogpanel"
# Failed sign-ins allowed per username and per client address within the window, then a lockout.
OGPANEL_LOGIN_MAX_FAILURES = env_int("OGPANEL_LOGIN_MAX_FAILURES", 5, minimum=1)
OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("OGPANEL_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1)
OGPANEL_LOGIN_WINDOW_SECONDS = env_int("OGPANEL_LOGIN_WINDOW_SECONDS", 15 * 60, minimum=1)
OGPANEL_LOGIN_LOCKOUT_SECONDS = env_int("OGPANEL_LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1)
# After re-entering a password (or code), the kill switch and credential changes don't ask again for this long.
OGPANEL_REAUTH_SECONDS = env_int("OGPANEL_REAUTH_SECONDS", 5 * 60, minimum=0)
# Encryption keys for private keys at rest: "id:base64key,id:base64key", newest first,
# or a file holding one such entry a line. Never stored in the database.
OGPANEL_ENCRYPTION_KEYS = env_str("OGPANEL_ENCRYPTION_KEYS")
OGPANEL_ENCRYPTION_KEY_FILE = env_str("OGPANEL_ENCRYPTION_KEY_FILE")
# Base URLs by credential environment; a credential may also carry a custom one.
OGPANEL_BASE_URLS = {
    "production": env_str("OGPANEL_PRODUCTION_URL", "https://external-api.kalshi.com/trade-api/v2"),
    "demo": env_str("OGPANEL_DEMO_URL", "https://external-api.demo.kalshi.co/trade-api/v2"),
    "simulator": env_str("OGPANEL_SIMULATOR_URL", "http://127.0.0.1:8765/trade-api/v2"),
}
# How many reverse proxies in front of the panel append to X-Forwarded-For (0 = none: use the peer).
OGPANEL_TRUSTED_PROXIES = env_int("OGPANEL_TRUSTED_PROXIES", 0, minimum=0, maximum=5)

# --- trip watch (manage.py watch_order_groups) ----------------------------------------------------
# How often the watcher reads every subaccount, in seconds; the WebSocket stream makes it read sooner.
OGPANEL_WATCH_SECONDS = env_float("OGPANEL_WATCH_SECONDS", 5.0, minimum=0.5)
# Follow the exchange's order_group_updates WebSocket channel (polling continues either way).
OGPANEL_WATCH_WEBSOCKET = env_bool("OGPANEL_WATCH_WEBSOCKET", True)
# The trip watch counts as down (one "trip watch is down" alert, one "recovered" when it is back) when no
# watcher has beaten, or every subaccount read has failed, for this many seconds.
OGPANEL_WATCH_DOWN_SECONDS = env_float("OGPANEL_WATCH_DOWN_SECONDS", 60.0, minimum=1.0)
# Trip alerts: a webhook (JSON POST; "slack" sends {"text": ...}) and email to these addresses.
OGPANEL_ALERT_WEBHOOK_URL = env_str("OGPANEL_ALERT_WEBHOOK_URL")
OGPANEL_ALERT_WEBHOOK_FORMAT = env_str("OGPANEL_ALERT_WEBHOOK_FORMAT", "json")
if OGPANEL_ALERT_WEBHOOK_FORMAT not in ("json", "slack"):
    raise ImproperlyConfigured(
        f"OGPANEL_ALERT_WEBHOOK_FORMAT must be json or slack, got {OGPANEL_ALERT_WEBHOOK_FORMAT!r}"
    )
OGPANEL_ALERT_EMAILS = env_list("OGPANEL_ALERT_EMAILS")
# The panel's address as people reach it (https://panel.example.com), for links in alerts.
OGPANEL_PUBLIC_URL = env_str("OGPANEL_PUBLIC_URL")
# The dashboard's banner shows trips observed this many minutes back.
OGPANEL_TRIP_BANNER_MINUTES = env_int("OGPANEL_TRIP_BANNER_MINUTES", 60, minimum=1)
# Outgoing mail (trip alerts) through Django's default mailer, over SMTP.
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env_str("EMAIL_HOST", "localhost"),
            "port": env_int("EMAIL_PORT", 25, minimum=1, maximum=65535),
            "username": env_str("EMAIL_HOST_USER"),
            "password": env_str("EMAIL_HOST_PASSWORD"),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": 10,
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ogpanel@localhost")

# --- operations: metrics, logs, error reports (ogpanel/metrics.py, logs.py, error_reports.py) -----
# Who may read /metrics (and the watcher's): these addresses and networks ("10.0.0.0/8,127.0.0.1"),
# or anyone sending "Authorization: Bearer <OGPANEL_METRICS_TOKEN>". Neither set: nobody.
OGPANEL_METRICS_ALLOWED_ADDRESSES = env_networks("OGPANEL_METRICS_ALLOWED_ADDRESSES")
OGPANEL_METRICS_TOKEN = env_str("OGPANEL_METRICS_TOKEN")
# host:port where the watcher serves its own series (`metrics.serve`); empty: it serves none.
OGPANEL_WATCHER_METRICS_ADDRESS = env_str("OGPANEL_WATCHER_METRICS_ADDRESS")
# Prometheus scrapes over plain HTTP from inside the network, like the health checks.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]
# Requests are counted from just inside WhiteNoise (static files are not); the log context needs the request id.
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware") + 1, "ogpanel.metrics.RequestMetricsMiddleware"
)
MIDDLEWARE.insert(MIDDLEWARE.index("ogpanel.middleware.RequestIdMiddleware") + 1, "ogpanel.logs.RequestLogMiddleware")

# Logs: plain text (the default, `make demo`) or JSON lines; every record carries the request id and user.
OGPANEL_LOG_FORMAT = env_choice("OGPANEL_LOG_FORMAT", "plain", ("plain", "json"))
# One line per request (method, path, status, view, milliseconds); on by default with JSON logs.
OGPANEL_LOG_REQUESTS = env_bool("OGPANEL_LOG_REQUESTS", OGPANEL_LOG_FORMAT == "json")
LOGGING["filters"] = {"request": {"()": "ogpanel.logs.RequestContextFilter"}}
LOGGING["formatters"]["json"] = JSON_FORMATTER
LOGGING["handlers"]["console"].update(formatter=OGPANEL_LOG_FORMAT, filters=["request"])
LOGGING["loggers"] = {"ogpanel.request": {"level": "INFO"}}  # the request lines, whatever OGPANEL_LOG_LEVEL says

# Error reports to Sentry when set (send_default_pii off, key material scrubbed: error_reports.py).
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT")

# --- kill switch sweeps (sweeps.py, jobs.py; manage.py run_sweeps) ----------------------------------
# A sweep's runner renews its lease this often over; a lease this old means the runner died.
OGPANEL_SWEEP_LEASE_SECONDS = env_float("OGPANEL_SWEEP_LEASE_SECONDS", 10.0, minimum=1.0)
# How often a sweep worker looks for a sweep nobody is running.
OGPANEL_SWEEP_POLL_SECONDS = env_float("OGPANEL_SWEEP_POLL_SECONDS", 1.0, minimum=0.05)
# The panel process that takes the kill switch POST starts the sweep at once, in a thread of its own;
# 0 leaves every sweep to the worker (it starts within OGPANEL_SWEEP_POLL_SECONDS).
OGPANEL_SWEEPS_IN_PANEL = env_bool("OGPANEL_SWEEPS_IN_PANEL", True)

# --- policy and four eyes (policy.py, approvals.py) ----------------------------------------------
# A request for a second person's approval expires after this many minutes.
OGPANEL_APPROVAL_MINUTES = env_int("OGPANEL_APPROVAL_MINUTES", 15, minimum=1)

# --- security: error reports, proxies, audit checkpoints ----------------------------------------
# Error pages (DEBUG included), mailed error reports and log lines never carry key material.
DEFAULT_EXCEPTION_REPORTER_FILTER = "ogpanel.redaction.KeyFilter"
DEFAULT_EXCEPTION_REPORTER = "ogpanel.redaction.KeyRedactingReporter"
LOGGING.setdefault("filters", {}).update(
    {
        "redact": {"()": "ogpanel.redaction.LogFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    }
)
LOGGING["handlers"]["console"].setdefault("filters", []).append("redact")
# Django's own handlers, restated: its DEBUG-only console printed each django.* record a second
# time (a refusal's traceback included) and runserver's request lines carry the query string.
LOGGING["formatters"]["django.server"] = {
    "()": "django.utils.log.ServerFormatter",
    "format": "[{server_time}] {message}",
    "style": "{",
}
LOGGING["handlers"]["django.server"] = {
    "class": "logging.StreamHandler",
    "formatter": "django.server",
    "filters": ["redact"],
}
LOGGING["handlers"]["mail_admins"] = {
    "level": "ERROR",
    "filters": ["require_debug_false"],
    "class": "django.utils.log.AdminEmailHandler",
}
LOGGING.setdefault("loggers", {}).update(
    {
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    }
)


# The proxies in front of the panel: X-Forwarded-For and X-Request-ID are believed only from them.
OGPANEL_TRUSTED_PROXY_ADDRESSES = env_networks("OGPANEL_TRUSTED_PROXY_ADDRESSES", "127.0.0.1,::1")
# Audit checkpoints (ogpanel/checkpoints.py): an HMAC key kept out of the database, like the
# encryption keys ("id:base64key" entries, newest first, or a file of them), and where they are written.
OGPANEL_AUDIT_CHECKPOINT_KEYS = env_str("OGPANEL_AUDIT_CHECKPOINT_KEYS")
OGPANEL_AUDIT_CHECKPOINT_KEY_FILE = env_str("OGPANEL_AUDIT_CHECKPOINT_KEY_FILE")
OGPANEL_AUDIT_CHECKPOINT_FILE = env_str("OGPANEL_AUDIT_CHECKPOINT_FILE", str(VAR_DIR / "audit-checkpoints.jsonl"))
# How often a running watcher (or `manage.py audit_checkpoint --every`) writes one, in seconds.
OGPANEL_AUDIT_CHECKPOINT_SECONDS = env_float("OGPANEL_AUDIT_CHECKPOINT_SECONDS", 300.0, minimum=1.0)

# --- account budgets and degraded dependencies (budgets.py, sharedcache.py) -----------------------
from ogpanel.kalshi.ratelimit import TIERS  # noqa: E402 (no Django import there; only the tier names)

if OGPANEL_KALSHI_TIER.lower() not in TIERS:
    raise ImproperlyConfigured(f"OGPANEL_KALSHI_TIER must be one of {', '.join(TIERS)}, got {OGPANEL_KALSHI_TIER!r}")
# How many panel processes draw on one account's budget (gunicorn workers on every host, plus the
# watcher). With the shared cache down, each process keeps to 1/OGPANEL_PROCESSES of it on its own.
OGPANEL_PROCESSES = env_int("OGPANEL_PROCESSES", 1, minimum=1, maximum=1000)
# Ask the exchange for each account's budget (GET /account/limits, /account/endpoint_costs) when a
# process first uses the account and on every credential test; what it says wins over the tier.
OGPANEL_READ_ACCOUNT_LIMITS = env_bool("OGPANEL_READ_ACCOUNT_LIMITS", True)
# Seconds a call to the shared cache may take before the panel works without it for a while.
OGPANEL_CACHE_TIMEOUT = env_float("OGPANEL_CACHE_TIMEOUT", 0.5, minimum=0.05)
if CACHES["default"]["BACKEND"].endswith("RedisCache"):
    CACHES["default"]["OPTIONS"] = {
        "socket_connect_timeout": OGPANEL_CACHE_TIMEOUT,
        "socket_timeout": OGPANEL_CACHE_TIMEOUT,
    }
# Seconds to wait for a PostgreSQL connection before a page says the database is unavailable.
OGPANEL_DATABASE_CONNECT_TIMEOUT = env_int("OGPANEL_DATABASE_CONNECT_TIMEOUT", 3, minimum=2)  # libpq: 2 at least
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", OGPANEL_DATABASE_CONNECT_TIMEOUT)
