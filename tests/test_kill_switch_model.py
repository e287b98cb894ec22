"""Model-based: generated histories of groups, lost and refused calls, kill switches and dead runs.

Hypothesis drives the exchange (groups created and tripped, triggers it ignores or refuses, resets
made at the exchange), starts trigger and reset sweeps on overlapping scopes, and kills runs
after their attempts were committed (some of which the exchange carried out). Whenever sweeps are
run to their end it checks what the issue promises: no attempt without a result, the chain intact,
a group reported "verified" only if the exchange shows it so, anything else reported failed after
at most MAX_TRIES calls, and never two open sweeps of one kind on a subaccount.

CI runs a fixed seed and a bounded number of examples (~20 s); for a longer search locally:
    OGPANEL_MODEL_EXAMPLES=500 .venv/bin/pytest tests/test_kill_switch_model.py
"""

import os
import threading

from django.db.models import Count, F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ogpanel import audit, jobs, sweeps
from ogpanel.models import AuditEvent, OpenAttempt, Sweep, SweepGroup, SweepTarget
from tests.sweeps import run_sweeps

EXAMPLES = int(os.environ.get("OGPANEL_MODEL_EXAMPLES", "30"))
ACTOR = audit.Actor.system("model")
SUBACCOUNTS = (0, 1, 2, 3)


def test_generated_histories_of_kill_switches_keep_their_promises(sim, subaccounts):
    by_number = {sub.number: sub for sub in subaccounts}

    class KillSwitchHistory(RuleBasedStateMachine):
        groups = Bundle("groups")

        def __init__(self) -> None:
            super().__init__()
            sim.reset()
            sim.clear_faults()

        @rule(target=groups, number=st.sampled_from(SUBACCOUNTS), tripped=st.booleans())
        def create(self, number: int, tripped: bool) -> tuple[int, str]:
            group_id = sim.create_group(number, 1)
            if tripped:
                sim.fill(sim.place_order(number, group_id, count=2), 2)
            return number, group_id

        @rule(group=groups, times=st.integers(1, sweeps.MAX_TRIES + 1))
        def exchange_ignores_calls(self, group: tuple[int, str], times: int) -> None:
            for kind in ("trigger", "reset"):
                sim.set_fault("ignore", path=f"/{group[1]}/{kind}", method="PUT", times=times)

        @rule(group=groups)
        def exchange_refuses_a_call(self, group: tuple[int, str]) -> None:
            sim.set_fault("error", path=f"/{group[1]}/", method="PUT", status=400, times=1)

        @rule(group=groups)
        def someone_resets_at_the_exchange(self, group: tuple[int, str]) -> None:
            sim.exchange.reset_group(group[1], group[0])

        @rule(scope=st.sampled_from([None, *SUBACCOUNTS]), triggering=st.booleans())
        def kill_switch(self, scope: int | None, triggering: bool) -> None:
            sweeps.sweep_start(
                actor=ACTOR,
                subaccounts=list(subaccounts) if scope is None else [by_number[scope]],
                reason="model",
                action=sweeps.TRIGGER if triggering else sweeps.RESET,
                lease_owner="",
                lease_seconds=10,
            )

        @rule(data=st.data())
        def a_run_dies_after_committing_its_attempts(self, data) -> None:
            open_sweeps = list(Sweep.objects.filter(finished_at__isnull=True))
            if not open_sweeps:
                return
            sweep = data.draw(st.sampled_from(open_sweeps))
            numbers = list(sweep.targets.values_list("subaccount", flat=True))
            listed = [(g["subaccount"], g["id"]) for g in sim.exchange.state()["groups"] if g["subaccount"] in numbers]
            if not listed:
                return
            sent = data.draw(st.lists(st.sampled_from(listed), unique=True, max_size=3))
            done = data.draw(st.lists(st.sampled_from(sent), unique=True)) if sent else []
            per_group = "trigger" if sweep.triggering else "reset"
            Sweep.objects.filter(pk=sweep.pk).update(runs=F("runs") + 1)  # as sweep_run does before any attempt
            audit.Pending.many(
                ACTOR,
                per_group,
                [
                    {
                        "credential": by_number[number].credential,
                        "subaccount": number,
                        "order_group_id": group_id,
                        "params": {"kill_switch": sweep.audit_seq},
                    }
                    for number, group_id in sent
                ],
            )
            for number, group_id in done:  # the exchange got these before the run died
                (sim.exchange.trigger_group if sweep.triggering else sim.exchange.reset_group)(group_id, number)

        @rule()
        def sweeps_run_to_their_end(self) -> None:
            for sweep in Sweep.objects.filter(finished_at__isnull=True).order_by("pk"):
                run_to_the_end(sweep)
                check_finished(sweep, sim.exchange.state()["groups"])
            assert not OpenAttempt.objects.exists()
            assert audit.verify().ok

        @invariant()
        def one_open_sweep_of_a_kind_per_subaccount(self) -> None:
            doubled = SweepTarget.objects.filter(open=True).values("action", "subaccount").annotate(n=Count("pk"))
            assert all(row["n"] == 1 for row in doubled)

        def teardown(self) -> None:
            run_sweeps()  # the next example starts with no open sweep
            sim.clear_faults()

    run_state_machine_as_test(
        KillSwitchHistory,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def run_to_the_end(sweep: Sweep) -> None:
    holder = sweep.lease_owner or "model"
    assert sweep.lease_owner == holder or jobs.claim(sweep.pk, holder)
    assert jobs.run(sweep.pk, holder, threading.Event())


def check_finished(sweep: Sweep, exchange_groups: list[dict]) -> None:
    """What a finished sweep reports against what the exchange shows right after it."""
    sweep.refresh_from_db()
    assert sweep.finished_at is not None
    wanted = sweep.triggering
    numbers = set(sweep.targets.values_list("subaccount", flat=True))
    rows = {row.order_group_id: row for row in SweepGroup.objects.filter(target__sweep=sweep)}
    for group in exchange_groups:
        if group["subaccount"] not in numbers:
            continue
        row = rows[group["id"]]  # every group on its subaccounts was listed
        if group["triggered"] == wanted:
            assert row.verified, (row.state, row.message)
        else:
            assert not row.verified
            assert row.state == SweepGroup.State.FAILED and row.message, (row.state, row.message)
    sent = AuditEvent.objects.filter(
        action="trigger" if wanted else "reset", outcome="attempted", params__kill_switch=sweep.audit_seq
    )
    reconciled = AuditEvent.objects.filter(attempt_seq__in=sent.values("seq"), params__reconciled=True)
    by_runs = sent.exclude(seq__in=reconciled.values("attempt_seq")).values("order_group_id").annotate(n=Count("pk"))
    assert all(row["n"] <= sweeps.MAX_TRIES for row in by_runs)
