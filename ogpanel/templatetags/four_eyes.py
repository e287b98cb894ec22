"""`{% four_eyes_notice kind subaccounts %}`: what a form's page says when the policy wants a second person.

Before a person fills in a form: that submitting it files a request (and who may approve it), or
that nobody else could approve it, in the words the POST would answer with; for a limit, the
subaccount's ceiling too. `reason_field=True` adds a reason box to forms that have none.
"""

from collections.abc import Iterable

from django import template
from django.conf import settings
from django.contrib.auth.models import User

from ogpanel import approvals, policy
from ogpanel.models import Subaccount
from ogpanel.views.four_eyes import nobody_message

register = template.Library()


# What templates pass: a number, a subaccount, several (a credential's), or nothing ("": a missing variable).
type Subaccounts = int | Subaccount | Iterable[int | Subaccount] | str | None


def _numbers(subaccounts: Subaccounts) -> list[int]:
    if subaccounts is None or subaccounts == "":
        return []
    if isinstance(subaccounts, int):
        return [subaccounts]
    if isinstance(subaccounts, Subaccount):
        return [subaccounts.number]
    return sorted(one.number if isinstance(one, Subaccount) else int(one) for one in subaccounts)


def _held(user: User, kind: str, numbers: list[int]) -> dict:
    """Whether `kind` on these subaccounts needs a second person, and who could be it."""
    if not policy.needs_second_person(approvals.KINDS[kind].four_eyes, numbers):
        return {}
    names = [one.get_username() for one in approvals.approvers(kind, numbers, user)]
    return {"needed": True, "names": names, "nobody": "" if names else nobody_message(kind, numbers)}


@register.inclusion_tag("ogpanel/four_eyes_notice.html", takes_context=True)
def four_eyes_notice(
    context: template.Context, kind: str, subaccounts: Subaccounts = None, reason_field: bool = False
) -> dict:
    """`kind` is an approvals.KINDS name; others (trigger) never wait and show nothing."""
    if kind not in approvals.KINDS:
        return {}
    numbers = _numbers(subaccounts)
    shown: dict = {"minutes": settings.OGPANEL_APPROVAL_MINUTES, "raising": kind == "update_limit"}
    if kind == "update_limit" and len(numbers) == 1:
        rules = policy.rules_for(numbers[0])
        shown.update(subaccount=numbers[0], ceiling=rules.ceiling, above_ceiling=rules.above_ceiling)
    held = _held(context["request"].user, kind, numbers)
    return {**shown, **held, "reason_field": reason_field and bool(held.get("names"))}


@register.inclusion_tag("ogpanel/four_eyes_reason.html", takes_context=True)
def four_eyes_reason(context: template.Context, kind: str, subaccount: int) -> dict:
    """A compact reason box (or the word that nobody could approve) for one row of a table of forms."""
    return {**_held(context["request"].user, kind, [subaccount]), "subaccount": subaccount}
