import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ogpanel.kalshi.ratelimit import TIERS


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
    # Kalshi gives its rate budget to the account (the member), not to a key: credentials with the
    # same account name and base URL draw on one budget (budgets.py). Blank: the environment's one account.
    account = models.CharField(
        "Kalshi account",
        max_length=100,
        blank=True,
        help_text="Credentials of one Kalshi account share its rate budget. Leave blank for the environment's account.",
    )
    tier = models.CharField(
        "rate-limit tier",
        max_length=20,
        blank=True,
        choices=[(name, name.title()) for name in TIERS],
        help_text="The account's tier, until the exchange reports its own. Blank: OGPANEL_KALSHI_TIER.",
    )
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
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150)
    actor_role = models.CharField(max_length=20, blank=True)
    action = models.CharField(max_length=50)
    environment = models.CharField(max_length=20, blank=True)
    subaccount = models.PositiveSmallIntegerField(null=True, blank=True)
    order_group_id = models.CharField(max_length=100, blank=True)
    api_key_id = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
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
        # each filter column gets an index ending in -seq, which serves plain lookups on it too.
        # Free-text search has trigram indexes on PostgreSQL (migration 0006).
        indexes = [
            models.Index(fields=["action", "-seq"]),
            models.Index(fields=["outcome", "-seq"]),
            models.Index(fields=["actor_username", "-seq"]),
            models.Index(fields=["subaccount", "-seq"]),
            models.Index(fields=["order_group_id", "-seq"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome} by {self.actor_username}"


class OpenAttempt(models.Model):
    """An attempted event that no result answers yet: the review page's "outcome unknown" filter.

    A derived index of the chain, not part of it: audit.py inserts and deletes rows in the same
    transaction as the events, verify() ignores the table, and it can be rebuilt from the events
    (migration 0007's BACKFILL). Finding lone attempts in the events themselves reads every one.
    """

    seq = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"open attempt #{self.seq}"


# --- trip watch (watcher.py, alerts.py) ------------------------------------------------------------


class ObservedGroup(models.Model):
    """The watcher's last-known state of one order group, so a restarted watcher reports nothing twice."""

    subaccount = models.PositiveSmallIntegerField()
    order_group_id = models.CharField(max_length=100)
    contracts_limit = models.PositiveIntegerField(null=True, blank=True)
    triggered = models.BooleanField(default=False)
    first_seen = models.DateTimeField()
    # When the read that last saw the group started: a panel change finished after this may explain a difference.
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subaccount", "order_group_id"], name="observed_group_unique")]

    def __str__(self) -> str:
        return f"{self.order_group_id} on subaccount {self.subaccount}"


class WatcherStatus(models.Model):
    """How the watcher last fared reading one subaccount."""

    subaccount = models.PositiveSmallIntegerField(primary_key=True)
    # The credential the subaccount was read with; mapping it to another one starts a new baseline.
    credential_id = models.BigIntegerField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "watcher statuses"
        ordering = ["subaccount"]

    def __str__(self) -> str:
        return f"watcher status of subaccount {self.subaccount}"


class WatcherHeartbeat(models.Model):
    """The watcher process's own pulse: one row, rewritten after every poll."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    host = models.CharField(max_length=200)
    interval_seconds = models.FloatField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    # Credential label -> {"state": "connected" | "connecting" | "reconnecting" | "off", "since": ..., "error": ...}
    streams = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"watcher on {self.host}"


class TripAlert(models.Model):
    """The outbox of trip alerts: one row per trip, written with the audit event that recorded it."""

    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="trip_alert")
    subaccount = models.PositiveSmallIntegerField()
    order_group_id = models.CharField(max_length=100)
    contracts_limit = models.PositiveIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(db_index=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Null once delivered, or after the last retry failed.
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-observed_at"]

    def __str__(self) -> str:
        return f"trip of {self.order_group_id} on subaccount {self.subaccount}"
