"""Signals for notifications. Both send ``deployment``; ``deploy_finished`` also ``status``."""

from django.dispatch import Signal

deploy_started = Signal()
deploy_finished = Signal()
