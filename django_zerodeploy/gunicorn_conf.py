"""Gunicorn hooks (placeholder; the reload issue fills this in)."""
