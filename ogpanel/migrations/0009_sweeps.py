"""Kill switch sweeps as durable jobs (sweeps.py, jobs.py): the sweep, its subaccounts, its groups."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ogpanel", "0007_open_attempts"),
    ]

    operations = [
        migrations.CreateModel(
            name="Sweep",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("action", models.CharField(max_length=30)),
                ("created_at", models.DateTimeField()),
                ("actor", models.JSONField()),
                ("reason", models.TextField(blank=True)),
                ("audit_seq", models.BigIntegerField(unique=True)),
                (
                    "phase",
                    models.CharField(
                        choices=[
                            ("listing", "Listing the order groups"),
                            ("triggering", "Sending"),
                            ("verifying", "Verifying at the exchange"),
                            ("done", "Done"),
                        ],
                        default="listing",
                        max_length=20,
                    ),
                ),
                ("lease_owner", models.CharField(blank=True, max_length=200)),
                ("lease_until", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("runs", models.PositiveIntegerField(default=0)),
                ("first_call_at", models.DateTimeField(blank=True, null=True)),
                ("calls_done", models.PositiveIntegerField(default=0)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="SweepTarget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("subaccount", models.PositiveSmallIntegerField()),
                ("action", models.CharField(max_length=30)),
                ("open", models.BooleanField(default=True)),
                ("listings", models.PositiveSmallIntegerField(default=0)),
                ("groups_at_start", models.PositiveIntegerField(blank=True, null=True)),
                ("done", models.BooleanField(default=False)),
                ("error", models.TextField(blank=True)),
                (
                    "sweep",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="targets", to="ogpanel.sweep"
                    ),
                ),
            ],
            options={
                "ordering": ["subaccount"],
            },
        ),
        migrations.CreateModel(
            name="SweepGroup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("order_group_id", models.CharField(max_length=100)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("to_go", "To go"),
                            ("sent", "Sent, awaiting the answer"),
                            ("changed", "Done by this sweep"),
                            ("already", "Already in that state"),
                            ("failed", "Failed"),
                            ("gone", "Gone from the exchange"),
                        ],
                        default="to_go",
                        max_length=20,
                    ),
                ),
                ("verified", models.BooleanField(default=False)),
                ("tries", models.PositiveSmallIntegerField(default=0)),
                ("message", models.TextField(blank=True)),
                (
                    "target",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="groups", to="ogpanel.sweeptarget"
                    ),
                ),
            ],
            options={
                "ordering": ["order_group_id"],
            },
        ),
        migrations.AddConstraint(
            model_name="sweeptarget",
            constraint=models.UniqueConstraint(
                condition=models.Q(("open", True)),
                fields=("action", "subaccount"),
                name="one_open_sweep_per_subaccount",
            ),
        ),
        migrations.AddConstraint(
            model_name="sweepgroup",
            constraint=models.UniqueConstraint(fields=("target", "order_group_id"), name="sweep_group_unique"),
        ),
    ]
