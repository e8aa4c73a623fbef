"""Zero-downtime deploys for the Django project this app is installed in."""

__version__ = "0.1.0"
