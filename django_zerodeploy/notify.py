"""Tell the site's ADMINS (Django's ``mail_admins``) about a failed deploy, if NOTIFY_ADMINS."""

from __future__ import annotations

import logging

from django.core.mail import mail_admins

from .conf import app_settings

logger = logging.getLogger(__name__)


def notify_admins(subject: str, message: str) -> None:
    """Send the mail; a mail server that fails is logged and never breaks a deploy."""
    if not app_settings.NOTIFY_ADMINS:
        return
    try:
        mail_admins(subject, message)
    except Exception:  # noqa: BLE001 - SMTP errors, bad ADMINS: the deploy's outcome stands
        logger.exception("Could not email ADMINS about: %s", subject)
