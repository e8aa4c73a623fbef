"""The Django side of the setup: what this checkout, its settings and its URLconf hold."""

from __future__ import annotations

from typing import Any

from ..conf import app_settings
from ..healthz_url import healthz_path
from .findings import Finding

MIDDLEWARE = "django_zerodeploy.middleware.HealthCheckMiddleware"


def check_middleware() -> Finding:
    from django.conf import settings

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return Finding(
            "middleware",
            False,
            f"{MIDDLEWARE} is not in MIDDLEWARE: load balancer probes by IP get 400",
            f'MIDDLEWARE.insert(0, "{MIDDLEWARE}")  # in settings.py',
        )
    if middleware[0] != MIDDLEWARE:
        return Finding(
            "middleware",
            False,
            f"{MIDDLEWARE} is in MIDDLEWARE but not first: earlier middleware may reject probes",
            f'put "{MIDDLEWARE}" first in MIDDLEWARE',
            required=False,
        )
    return Finding("middleware", True, f"{MIDDLEWARE} is first in MIDDLEWARE")


def check_checkout() -> Finding:
    """What the environment step of a deploy requires of the checkout."""
    from ..git import Git, GitError

    repo = app_settings.repo_dir
    git = Git(repo, timeout=30)
    try:
        git.head()
    except GitError:
        return Finding(
            "checkout",
            False,
            f"{repo} is not a git checkout with a commit",
            "git clone URL " + str(repo),
        )
    branch = git.current_branch()
    if not branch:
        return Finding("checkout", False, f"{repo} has a detached HEAD", "git switch BRANCH")
    upstream = git.upstream(branch)
    if not upstream and not app_settings.BRANCH:
        return Finding(
            "checkout",
            False,
            f"branch {branch} has no upstream",
            f"git branch --set-upstream-to={app_settings.REMOTE}/{branch}",
        )
    modified = git.modified_tracked_files()
    if modified:
        return Finding(
            "checkout",
            False,
            f"tracked files are modified in {repo}: {', '.join(modified[:5])}",
            "commit the change upstream, or git restore FILE",
        )
    target = "/".join(upstream) if upstream else f"{app_settings.REMOTE}/{app_settings.BRANCH}"
    return Finding("checkout", True, f"{repo} on {branch}, follows {target}, clean")


def check_urls() -> Finding:
    path = healthz_path()
    if path is None:
        return Finding(
            "URL include",
            False,
            "django_zerodeploy.urls is not included in the URLconf: there is no /healthz/",
            'path("", include("django_zerodeploy.urls")),  # in urls.py urlpatterns',
        )
    return Finding("URL include", True, f"django_zerodeploy.urls is included: health at {path}")


def check_healthz_url(master: Any) -> Finding:
    """``HEALTHZ_URL`` asked through the client the verify step uses (http, https or a Unix
    socket); unset, the socket Gunicorn binds, which is what the verify step then polls."""
    from .. import healthz_url
    from ..pipeline.serving import bind_url, healthz_release

    url = app_settings.HEALTHZ_URL
    bound = bind_url(master) if master is not None else None
    suggestion = f'ZERODEPLOY["HEALTHZ_URL"] = "{bound}"' if bound else ""
    if not url:
        release = healthz_release(bound) if bound else None
        return Finding(
            "HEALTHZ_URL",
            False,
            "not set: the verify step relies on the workers' reports alone"
            if release is None
            else f"not set: the verify step polls Gunicorn's bind {bound}, which answers: "
            f"release {release}",
            suggestion,
            required=False,
        )
    problem = healthz_url.problem(url)
    release = None if problem else healthz_release(url)
    if release is None:
        path = healthz_path() or "/healthz/"
        return Finding(
            "HEALTHZ_URL",
            False,
            problem or f"{url} does not answer with a release (is it this host's {path}?)",
            suggestion,
        )
    return Finding("HEALTHZ_URL", True, f"{url} answers: release {release}")
