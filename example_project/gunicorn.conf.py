# Gunicorn reads this file from the working directory. The hooks from django_zerodeploy make
# every worker load the URLconf, run SMOKE_URLS and report that it is ready before it accepts.
from django_zerodeploy.gunicorn_conf import *  # noqa: F401,F403

wsgi_app = "exampleproject.wsgi:application"
workers = 2
