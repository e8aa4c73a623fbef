"""Settings for the in-process tests: the example project's, with a throwaway database."""

import os
import tempfile

from exampleproject.settings import *  # noqa: F401,F403
from exampleproject.settings import DATABASES

_tmp = tempfile.mkdtemp(prefix="zerodeploy-tests-")
DATABASES["default"]["NAME"] = os.path.join(_tmp, "test.sqlite3")
DATABASES["default"]["TEST"] = {"NAME": os.path.join(_tmp, "test-db.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
