"""Settings for the benchmarks: production settings, plain HTTP on loopback, throwaway secrets.

benchmarks/common.py sets DATABASE_URL, OGPANEL_ENCRYPTION_KEYS and the tier in the environment
before Django reads this, for the benchmark's own process and for any gunicorn it starts.
"""

import os

os.environ.setdefault("SECRET_KEY", "benchmarks-only-not-a-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("OGPANEL_LOG_LEVEL", "WARNING")

from ogpanel.settings import *  # noqa: F403

# No collectstatic step: static files come from the finders, as in the tests.
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
