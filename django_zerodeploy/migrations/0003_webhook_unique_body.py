"""Swap the unique delivery id for a unique body hash after the reload, when no release that
relies on the old constraint serves any more (a post-deploy migration)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    zerodeploy = {"stage": "post"}

    dependencies = [
        ("django_zerodeploy", "0002_webhook_body_hash"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="webhookdelivery",
            name="zerodeploy_unique_delivery",
        ),
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.UniqueConstraint(
                fields=("body_sha256",), name="zerodeploy_unique_delivery_body"
            ),
        ),
    ]
