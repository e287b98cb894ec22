import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Credential(models.Model):
    """A Kalshi API key. The private key is stored only encrypted (see vault.py)."""

    class Environment(models.TextChoices):
        PRODUCTION = "production", "Production"
        DEMO = "demo", "Demo"
        SIMULATOR = "simulator", "Local simulator"
        CUSTOM = "custom", "Custom base URL"

    # Bound into the ciphertext as associated data, so a ciphertext copied into another
    # row does not decrypt there.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    label = models.CharField(max_length=100, unique=True)
    environment = models.CharField(max_length=20, choices=Environment.choices)
    custom_base_url = models.URLField(blank=True, help_text="Only for the custom environment; ends in /trade-api/v2.")
    key_id = models.CharField("API key id", max_length=100)
    private_key_encrypted = models.TextField(editable=False)
    fingerprint = models.CharField("public key fingerprint", max_length=100, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label

    @property
    def base_url(self) -> str:
        if self.environment == self.Environment.CUSTOM:
            return self.custom_base_url
        return settings.OGPANEL_BASE_URLS[self.environment]


class Subaccount(models.Model):
    """A trading subaccount (0 = primary) and the credential the panel uses for it."""

    number = models.PositiveSmallIntegerField(
        primary_key=True, validators=[MinValueValidator(0), MaxValueValidator(63)]
    )
    credential = models.ForeignKey(Credential, on_delete=models.PROTECT, related_name="subaccounts")
    label = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"Subaccount {self.number}" + (f" ({self.label})" if self.label else "")


class AccessScope(models.Model):
    """Limits a user to some subaccounts. No row means every subaccount."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_scope")
    subaccounts = models.JSONField(default=list, help_text="Subaccount numbers this user may see and act on.")

    def __str__(self) -> str:
        return f"{self.user}: {self.subaccounts}"


class AuditEvent(models.Model):
    """One link of the append-only, hash-chained audit log. Written only by audit.py."""

    class Outcome(models.TextChoices):
        ATTEMPTED = "attempted", "Attempted"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"
        OBSERVED = "observed", "Observed"

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    # No database constraint and no cascade: deleting a user must not touch (or be blocked by)
    # the append-only table; the username and role snapshots keep the history readable.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, db_index=True)
    actor_role = models.CharField(max_length=20, blank=True)
    action = models.CharField(max_length=50, db_index=True)
    environment = models.CharField(max_length=20, blank=True)
    subaccount = models.PositiveSmallIntegerField(null=True, blank=True, db_index=True)
    order_group_id = models.CharField(max_length=100, blank=True, db_index=True)
    api_key_id = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, db_index=True)
    # The attempt event a result answers; null for attempts and one-off events.
    attempt_seq = models.BigIntegerField(null=True, blank=True, db_index=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        # The review page filters on one column and pages newest-first by seq (keyset):
        # each filter column gets an index ending in -seq.
        indexes = [
            models.Index(fields=["action", "-seq"]), models.Index(fields=["outcome", "-seq"]),
            models.Index(fields=["actor_username", "-seq"]), models.Index(fields=["subaccount", "-seq"]),
            models.Index(fields=["order_group_id", "-seq"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome} by {self.actor_username}"
