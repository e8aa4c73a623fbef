"""WSGI entry point. EXAMPLE_BOOT_DELAY simulates a project whose app takes a while to load,
which is what makes a plain HUP reload hurt."""

import os
import time

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = get_wsgi_application()

if os.environ.get("EXAMPLE_BOOT_DELAY"):
    time.sleep(float(os.environ["EXAMPLE_BOOT_DELAY"]))
