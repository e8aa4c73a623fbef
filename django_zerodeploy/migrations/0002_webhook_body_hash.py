"""Replay protection by the hash of the body: the column and its index, safe while the previous
release still serves (a nullable column; it writes NULL there)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_zerodeploy", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="body_sha256",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="delivery_id",
            field=models.CharField(blank=True, help_text="As the forge sent it.", max_length=200),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="received_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
    ]
