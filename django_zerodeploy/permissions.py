"""Who may start deploys: one rule that the admin, its views and the rollout pages all ask.

Its own module so that those pages import it one way (none of them imports another for it).
"""

from __future__ import annotations

from django.http import HttpRequest

TRIGGER_PERMISSION = "django_zerodeploy.trigger_deploy"


def can_trigger(request: HttpRequest) -> bool:
    """Only users granted ``trigger_deploy`` (superusers have every permission)."""
    return bool(
        request.user.is_active
        and request.user.is_staff
        and request.user.has_perm(TRIGGER_PERMISSION)
    )
