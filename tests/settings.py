"""Settings for the test suite: production settings with test-only secrets and plain HTTP."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The suite counts the requests each test causes; the tests of account budgets switch this read on.
os.environ.setdefault("OGPANEL_READ_ACCOUNT_LIMITS", "0")

from ogpanel.settings import *  # noqa: F403

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_USE_FINDERS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast personas
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STATIC_ROOT = None  # type: ignore[assignment]  # served by the finders in tests; no collectstatic run

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, as in production, not Django's shared-cache in-memory database: there a thread that
    # writes while another reads fails with "database table is locked" (SQLite's shared-cache
    # table locks ignore the busy timeout), and the kill switch's sweeps run in threads of their own.
    import tempfile

    DATABASES["default"]["TEST"] = {"NAME": os.path.join(tempfile.gettempdir(), f"ogpanel-test-{os.getpid()}.sqlite3")}  # noqa: F405
