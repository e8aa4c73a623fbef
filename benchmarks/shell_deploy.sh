#!/usr/bin/env bash
# The workflow that `manage.py deploy` replaces, as the usual deploy script: every step,
# every time, trusting the new code, with a plain HUP reload at the end (what
# `systemctl reload gunicorn` does). The baseline of benchmarks/deploy_benchmark.py.
#
#   PIDFILE=/run/site/gunicorn.pid PYTHON=/path/to/venv/bin/python shell_deploy.sh SERVER_CHECKOUT
set -euo pipefail
cd "${1:?usage: shell_deploy.sh SERVER_CHECKOUT}"
PYTHON="${PYTHON:-python3}"
git pull --ff-only --quiet
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt
"$PYTHON" manage.py migrate --noinput
"$PYTHON" manage.py collectstatic --noinput
kill -HUP "$(cat "${PIDFILE:?set PIDFILE to the Gunicorn pidfile}")"
