import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

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
        # The form refuses "desk" beside "Desk"; this holds it for two posts racing past that check.
        constraints = [models.UniqueConstraint(Lower("label"), name="credential_label_unique_any_case")]

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
    # Not a column: views.audit.attach_results sets it on the attempts a page lists (None: no result yet).
    result: "AuditEvent | None"

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
    # Unexpected errors while recording this subaccount's listing (a bug, not the exchange): each cost it a round.
    record_failures = models.PositiveIntegerField(default=0)

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


class WatchLease(models.Model):
    """Which watcher process leads (polls, records, sends alerts): one row; the others stand by.

    The holder renews `until` while its loop makes progress; a lapsed lease may be taken by any
    standby, which notes whom it took it from and when that one last renewed (watch_lease.py).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    holder = models.CharField(max_length=200)
    since = models.DateTimeField()  # when the holder took the lease
    renewed_at = models.DateTimeField()
    until = models.DateTimeField()
    taken_from = models.CharField(max_length=200, blank=True)
    taken_from_renewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"trip watch led by {self.holder}"


class WatchOutage(models.Model):
    """Whether the trip watch is down as far as anyone has announced (watch_outage.py): one row.

    A process announces "down" or "recovered" only by moving this row in the transaction of the
    announcement's audit event, so however many processes check, each is announced once.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    down_since = models.DateTimeField(null=True, blank=True)
    announced_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "trip watch down" if self.down_since else "trip watch up"


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


# --- kill switch sweeps (sweeps.py, jobs.py) -------------------------------------------------------


class Sweep(models.Model):
    """One kill switch run, kept so it survives the process running it. Written only by sweeps.py and jobs.py.

    Whoever holds the lease (a panel process's thread, or a worker) runs it and renews the lease as
    it goes; a lease that lapses means that process died, and any worker may take the sweep over.
    """

    class Phase(models.TextChoices):
        LISTING = "listing", "Listing the order groups"
        TRIGGERING = "triggering", "Sending"
        VERIFYING = "verifying", "Verifying at the exchange"
        DONE = "done", "Done"

    action = models.CharField(max_length=30)  # kill_switch_trigger or kill_switch_reset, as audited
    created_at = models.DateTimeField()
    # The operator's Actor, so whichever process finishes the sweep records it in their name.
    actor = models.JSONField()
    reason = models.TextField(blank=True)
    audit_seq = models.BigIntegerField(unique=True)  # the sweep's own attempt event
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.LISTING)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    runs = models.PositiveIntegerField(default=0)  # how many times a process took it up
    first_call_at = models.DateTimeField(null=True, blank=True)
    calls_done = models.PositiveIntegerField(default=0)  # group calls answered (the observed pace)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"sweep {self.pk} ({self.action}, {self.phase})"

    @property
    def triggering(self) -> bool:
        return self.action == "kill_switch_trigger"


class SweepTarget(models.Model):
    """One subaccount of a sweep: how many times it was listed, whether it is finished, why not."""

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="targets")
    subaccount = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=30)  # the sweep's, here for the constraint below
    # True until the sweep is done: at most one open sweep per action and subaccount, so a second
    # kill switch on the same subaccounts joins the first instead of doubling its calls.
    open = models.BooleanField(default=True)
    listings = models.PositiveSmallIntegerField(default=0)
    groups_at_start = models.PositiveIntegerField(null=True, blank=True)  # what the first listing saw
    done = models.BooleanField(default=False)
    error = models.TextField(blank=True)  # the last listing's failure

    class Meta:
        ordering = ["subaccount"]
        constraints = [
            models.UniqueConstraint(
                fields=["action", "subaccount"], condition=models.Q(open=True), name="one_open_sweep_per_subaccount"
            )
        ]

    def __str__(self) -> str:
        return f"subaccount {self.subaccount} of sweep {self.sweep_id}"


class SweepGroup(models.Model):
    """One order group a sweep found, and what became of it."""

    class State(models.TextChoices):
        TO_GO = "to_go", "To go"
        SENT = "sent", "Sent, awaiting the answer"
        CHANGED = "changed", "Done by this sweep"
        ALREADY = "already", "Already in that state"
        FAILED = "failed", "Failed"
        GONE = "gone", "Gone from the exchange"

    target = models.ForeignKey(SweepTarget, on_delete=models.CASCADE, related_name="groups")
    order_group_id = models.CharField(max_length=100)
    state = models.CharField(max_length=20, choices=State.choices, default=State.TO_GO)
    verified = models.BooleanField(default=False)  # the latest listing showed it in the wanted state
    tries = models.PositiveSmallIntegerField(default=0)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["order_group_id"]
        constraints = [models.UniqueConstraint(fields=["target", "order_group_id"], name="sweep_group_unique")]

    def __str__(self) -> str:
        return f"{self.order_group_id} in sweep target {self.target_id}"


# --- policy and four eyes (policy.py, approvals.py, notices.py) ----------------------------------


class PolicyVersion(models.Model):
    """One version of a subaccount's risk policy (no subaccount: the firm-wide default). Never changed once written.

    The newest version of a subaccount is its policy, unless it says to follow the default; with
    no version at all the default applies, and with no default either there is no policy.
    """

    class AboveCeiling(models.TextChoices):
        REFUSE = "refuse", "Refused"
        APPROVE = "approve", "Allowed with a second person's approval"

    class Remediation(models.TextChoices):
        OFF = "off", "Off"
        LOWER_LIMIT = "lower_limit", "Lower the limit back to the ceiling"
        TRIGGER = "trigger", "Trigger the group"

    subaccount = models.PositiveSmallIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField()
    follows_default = models.BooleanField(default=False)
    contracts_limit_ceiling = models.PositiveIntegerField(null=True, blank=True)
    above_ceiling = models.CharField(max_length=20, choices=AboveCeiling.choices, default=AboveCeiling.REFUSE)
    require_active_group = models.BooleanField(default=False)
    # The four-eyes names (policy.FOUR_EYES) of the actions that need a second person.
    four_eyes = models.JSONField(default=list, blank=True)
    remediation = models.CharField(max_length=20, choices=Remediation.choices, default=Remediation.OFF)
    set_at = models.DateTimeField()
    set_by = models.CharField(max_length=150)
    approved_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["subaccount", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["subaccount", "version"],
                condition=models.Q(subaccount__isnull=False),
                name="policy_version_unique",
            ),
            models.UniqueConstraint(
                fields=["version"], condition=models.Q(subaccount__isnull=True), name="policy_default_version_unique"
            ),
        ]

    def __str__(self) -> str:
        where = "default" if self.subaccount is None else f"subaccount {self.subaccount}"
        return f"policy of {where}, version {self.version}"


class ApprovalRequest(models.Model):
    """An action waiting for a second person (maker-checker). Written only by approvals.py."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved, running"  # claimed by its approver; the action is under way
        EXECUTED = "executed", "Approved and executed"
        FAILED = "failed", "Approved, but the action failed"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Withdrawn"

    # Bound into the encrypted secret as associated data, like Credential.uuid.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=40)  # approvals.KINDS
    subaccount = models.PositiveSmallIntegerField(null=True, blank=True)
    # Every subaccount the action touches: an approver's scope must hold them all.
    subaccounts = models.JSONField(default=list, blank=True)
    order_group_id = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    # A private key a credential change brings, encrypted (vault.py); emptied once the request is decided.
    secret = models.TextField(blank=True, editable=False)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_username = models.CharField(max_length=150)
    requested_at = models.DateTimeField()
    filed_seq = models.BigIntegerField(null=True, blank=True)  # the "request_filed" audit event
    expires_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_username = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)  # the approver's or rejecter's words
    result = models.TextField(blank=True)  # what running the action did, in words

    class Meta:
        ordering = ["-requested_at", "-pk"]

    def __str__(self) -> str:
        return f"request #{self.pk}: {self.kind} ({self.status})"


class PolicyBreach(models.Model):
    """A breach of the policy seen at the exchange, open until a listing shows it fixed."""

    class Kind(models.TextChoices):
        ABOVE_CEILING = "above_ceiling", "Limit above the ceiling"
        NO_ACTIVE_GROUP = "no_active_group", "No active order group"

    subaccount = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    order_group_id = models.CharField(max_length=100, blank=True)
    contracts_limit = models.PositiveIntegerField(null=True, blank=True)
    ceiling = models.PositiveIntegerField(null=True, blank=True)
    opened_at = models.DateTimeField()
    opened_seq = models.BigIntegerField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_seq = models.BigIntegerField(null=True, blank=True)
    # The optional remediation (breaches.record_breaches): when it last ran, whether it worked, what it did.
    remediation_tried_at = models.DateTimeField(null=True, blank=True)
    remediation_ok = models.BooleanField(null=True, blank=True)
    remediation = models.TextField(blank=True)

    class Meta:
        ordering = ["subaccount", "-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subaccount", "kind", "order_group_id"],
                condition=models.Q(cleared_at__isnull=True),
                name="policy_breach_open_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} on subaccount {self.subaccount} {self.order_group_id}".rstrip()


class Notice(models.Model):
    """The outbox of alerts about requests waiting for approval and policy breaches (notices.py).

    Written in the same transaction as the audit event it announces, like TripAlert.
    """

    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="notice")
    kind = models.CharField(max_length=40)  # request_pending, policy_breach
    subaccount = models.PositiveSmallIntegerField(null=True, blank=True)
    title = models.CharField(max_length=300)
    text = models.TextField()
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title
