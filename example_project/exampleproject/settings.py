"""Settings of the example site. Environment variables let the tests and the demo point it at
their own database, pidfile and runtime folder; a real project would write values here."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("EXAMPLE_SECRET_KEY", "example-insecure-key-change-me-0123456789")
DEBUG = os.environ.get("EXAMPLE_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "django_zerodeploy",
    "notes",
]

MIDDLEWARE = [
    "django_zerodeploy.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "exampleproject.urls"
WSGI_APPLICATION = "exampleproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if os.environ.get("EXAMPLE_DB_ENGINE") == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("EXAMPLE_DB_NAME", "test"),
            "HOST": os.environ.get("EXAMPLE_DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("EXAMPLE_DB_PORT", "5432"),
            "USER": os.environ.get("EXAMPLE_DB_USER", "postgres"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("EXAMPLE_DB_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {"timeout": 20},
        }
    }

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("EXAMPLE_STATIC_ROOT", BASE_DIR / "staticfiles"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-q2 keeps each cluster's heartbeat in a Django cache. It must be shared between processes
# (not the per-process default) for the admin to see whether a cluster runs (docs/admin.md).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "qcluster": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.path.join(
            os.environ.get("ZERODEPLOY_RUNTIME_DIR") or "/tmp/example-site", "qcluster-cache"
        ),
    },
}

# django-q2 runs admin- and webhook-triggered deploys. These values make a deploy run exactly
# once (see docs/admin.md): no retries, failures acknowledged, retry > timeout.
Q_CLUSTER = {
    "name": "example",
    "cache": "qcluster",
    "orm": "default",
    "workers": 1,
    "timeout": 1800,
    "retry": 1900,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "ALT_CLUSTERS": {},
}
# A Redis broker instead of the ORM one (docs/rollout.md), e.g. redis://127.0.0.1:6379/3
if os.environ.get("EXAMPLE_Q_REDIS"):
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = os.environ["EXAMPLE_Q_REDIS"]


def _env_list(name, default):
    value = os.environ.get(name)
    return [v for v in value.split(",") if v] if value is not None else default


ZERODEPLOY = {
    "HOST": os.environ.get("ZERODEPLOY_HOST") or None,
    # the load balancer's health-check timing (HAProxy inter/fall/rise), for rollouts
    "LB_CHECK_INTERVAL": float(os.environ.get("ZERODEPLOY_LB_CHECK_INTERVAL", "2")),
    "LB_FALL": int(os.environ.get("ZERODEPLOY_LB_FALL", "3")),
    "LB_RISE": int(os.environ.get("ZERODEPLOY_LB_RISE", "2")),
    "GUNICORN_PIDFILE": os.environ.get("ZERODEPLOY_PIDFILE") or None,
    "RUNTIME_DIR": os.environ.get("ZERODEPLOY_RUNTIME_DIR") or None,
    "HEALTHZ_URL": os.environ.get("ZERODEPLOY_HEALTHZ_URL") or None,
    "RELOAD_STRATEGY": os.environ.get("ZERODEPLOY_RELOAD_STRATEGY", "usr2"),
    "SMOKE_URLS": _env_list("ZERODEPLOY_SMOKE_URLS", ["/"]),
    "HEALTHZ_TOKEN": os.environ.get("ZERODEPLOY_HEALTHZ_TOKEN") or None,
    "WEBHOOK_SECRET": os.environ.get("ZERODEPLOY_WEBHOOK_SECRET") or None,
    "WEBHOOK_PROVIDERS": _env_list("ZERODEPLOY_WEBHOOK_PROVIDERS", ["github"]),
    "KEEP_RELEASES": int(os.environ.get("ZERODEPLOY_KEEP_RELEASES", "5")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
