"""Policy versions, requests for a second person, recorded breaches and their alerts' outbox (issue 18)."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ogpanel", "0011_audit_runtime_privileges"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApprovalRequest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("uuid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("kind", models.CharField(max_length=40)),
                ("subaccount", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("subaccounts", models.JSONField(blank=True, default=list)),
                ("order_group_id", models.CharField(blank=True, max_length=100)),
                ("params", models.JSONField(blank=True, default=dict)),
                ("secret", models.TextField(blank=True, editable=False)),
                ("reason", models.TextField()),
                ("requested_by_username", models.CharField(max_length=150)),
                ("requested_at", models.DateTimeField()),
                ("filed_seq", models.BigIntegerField(blank=True, null=True)),
                ("expires_at", models.DateTimeField(db_index=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("approved", "Approved, running"),
                            ("executed", "Approved and executed"),
                            ("failed", "Approved, but the action failed"),
                            ("rejected", "Rejected"),
                            ("expired", "Expired"),
                            ("cancelled", "Withdrawn"),
                        ],
                        db_index=True,
                        default="pending",
                        max_length=20,
                    ),
                ),
                ("decided_by_username", models.CharField(blank=True, max_length=150)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("note", models.TextField(blank=True)),
                ("result", models.TextField(blank=True)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-requested_at", "-pk"],
            },
        ),
        migrations.CreateModel(
            name="Notice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(max_length=40)),
                ("subaccount", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("title", models.CharField(max_length=300)),
                ("text", models.TextField()),
                ("payload", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(db_index=True)),
                ("webhook_sent_at", models.DateTimeField(blank=True, null=True)),
                ("email_sent_at", models.DateTimeField(blank=True, null=True)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("last_error", models.TextField(blank=True)),
                (
                    "event",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT, related_name="notice", to="ogpanel.auditevent"
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="PolicyBreach",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("subaccount", models.PositiveSmallIntegerField()),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("above_ceiling", "Limit above the ceiling"),
                            ("no_active_group", "No active order group"),
                        ],
                        max_length=20,
                    ),
                ),
                ("order_group_id", models.CharField(blank=True, max_length=100)),
                ("contracts_limit", models.PositiveIntegerField(blank=True, null=True)),
                ("ceiling", models.PositiveIntegerField(blank=True, null=True)),
                ("opened_at", models.DateTimeField()),
                ("opened_seq", models.BigIntegerField()),
                ("cleared_at", models.DateTimeField(blank=True, null=True)),
                ("cleared_seq", models.BigIntegerField(blank=True, null=True)),
                ("remediation_tried_at", models.DateTimeField(blank=True, null=True)),
                ("remediation_ok", models.BooleanField(blank=True, null=True)),
                ("remediation", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["subaccount", "-opened_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("cleared_at__isnull", True)),
                        fields=("subaccount", "kind", "order_group_id"),
                        name="policy_breach_open_unique",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="PolicyVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("subaccount", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("version", models.PositiveIntegerField()),
                ("follows_default", models.BooleanField(default=False)),
                ("contracts_limit_ceiling", models.PositiveIntegerField(blank=True, null=True)),
                (
                    "above_ceiling",
                    models.CharField(
                        choices=[("refuse", "Refused"), ("approve", "Allowed with a second person's approval")],
                        default="refuse",
                        max_length=20,
                    ),
                ),
                ("require_active_group", models.BooleanField(default=False)),
                ("four_eyes", models.JSONField(blank=True, default=list)),
                (
                    "remediation",
                    models.CharField(
                        choices=[
                            ("off", "Off"),
                            ("lower_limit", "Lower the limit back to the ceiling"),
                            ("trigger", "Trigger the group"),
                        ],
                        default="off",
                        max_length=20,
                    ),
                ),
                ("set_at", models.DateTimeField()),
                ("set_by", models.CharField(max_length=150)),
                ("approved_by", models.CharField(blank=True, max_length=150)),
                ("reason", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["subaccount", "-version"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("subaccount__isnull", False)),
                        fields=("subaccount", "version"),
                        name="policy_version_unique",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("subaccount__isnull", True)),
                        fields=("version",),
                        name="policy_default_version_unique",
                    ),
                ],
            },
        ),
    ]
