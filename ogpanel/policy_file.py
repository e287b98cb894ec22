"""The policy as a file, so it can live in a firm's repository: export, check, import.

JSON, written with sorted keys and a fixed indent so that an unchanged policy exports byte for
byte the same and a change reads as a small diff:

    {
      "default": {"above_ceiling": "refuse", "contracts_limit_ceiling": 1000, "four_eyes": ["reset", ...],
                  "remediation": "off", "require_active_group": false},
      "format": "ogpanel-policy/1",
      "subaccounts": {"3": {...}}
    }

"default" is the firm-wide policy; "subaccounts" holds those with a policy of their own. The file
is the whole policy: importing it gives every subaccount it does not name the default. A file is
checked completely before anything is written, and importing writes a version only where the
policy changes, so importing the same file twice changes nothing.
"""

import json
from dataclasses import dataclass

from django.conf import settings

from ogpanel import policy
from ogpanel.audit import Actor
from ogpanel.kalshi import MAX_CONTRACTS_LIMIT
from ogpanel.models import PolicyVersion

FORMAT = "ogpanel-policy/1"
RULE_KEYS = {"contracts_limit_ceiling", "above_ceiling", "require_active_group", "four_eyes", "remediation"}


class PolicyFileError(ValueError):
    """The file is not a policy this panel can load; the message says where and why."""


@dataclass(frozen=True)
class PolicyDocument:
    default: policy.Rules
    subaccounts: dict[int, policy.Rules]


def current() -> PolicyDocument:
    """The policy as it is now: the default's rules and those of every subaccount with its own."""
    numbers = range(settings.OGPANEL_MAX_SUBACCOUNT + 1)
    effective = policy.effective_many(numbers)
    own = {number: one.rules for number, one in effective.items() if one.source == "own"}
    return PolicyDocument(policy.rules_for(None), own)


def dumps(document: PolicyDocument, *, subaccounts: set[int] | None = None) -> str:
    """The file's text; `subaccounts` limits which subaccounts it names (a scoped user's export)."""
    named = {n: r for n, r in document.subaccounts.items() if subaccounts is None or n in subaccounts}
    content = {
        "format": FORMAT,
        "default": document.default.as_dict(),
        "subaccounts": {str(number): rules.as_dict() for number, rules in sorted(named.items())},
    }
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def _rules(where: str, values: object) -> policy.Rules:
    if not isinstance(values, dict):
        raise PolicyFileError(f"{where}: expected an object with {', '.join(sorted(RULE_KEYS))}.")
    missing, unknown = RULE_KEYS - set(values), set(values) - RULE_KEYS
    if missing or unknown:
        problems = [f"missing {', '.join(sorted(missing))}"] if missing else []
        problems += [f"unknown {', '.join(sorted(unknown))}"] if unknown else []
        raise PolicyFileError(f"{where}: {'; '.join(problems)}.")
    ceiling = values["contracts_limit_ceiling"]
    # bool is an int in Python: true is not a ceiling of 1.
    if ceiling is not None and (type(ceiling) is not int or not 1 <= ceiling <= MAX_CONTRACTS_LIMIT):
        raise PolicyFileError(
            f"{where}: contracts_limit_ceiling must be null or a whole number of contracts, 1 to "
            f"{MAX_CONTRACTS_LIMIT:,}."
        )
    choices = {
        "above_ceiling": PolicyVersion.AboveCeiling.values,
        "remediation": PolicyVersion.Remediation.values,
    }
    for key, allowed in choices.items():
        if values[key] not in allowed:
            raise PolicyFileError(f"{where}: {key} must be one of {', '.join(allowed)}.")
    if type(values["require_active_group"]) is not bool:
        raise PolicyFileError(f"{where}: require_active_group must be true or false.")
    four_eyes = values["four_eyes"]
    if not isinstance(four_eyes, list) or not all(isinstance(name, str) for name in four_eyes):
        raise PolicyFileError(f"{where}: four_eyes must be a list of action names.")
    strange = sorted(set(four_eyes) - set(policy.FOUR_EYES))
    if strange:
        raise PolicyFileError(
            f"{where}: unknown four_eyes name {', '.join(strange)} (known: {', '.join(policy.FOUR_EYES)})."
        )
    return policy.Rules.from_dict(values)


def loads(text: str) -> PolicyDocument:
    """Parse and check a policy file (raises PolicyFileError naming the first problem)."""
    try:
        content = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PolicyFileError(f"Not JSON: {exc}.") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise PolicyFileError(f'Not an ogpanel policy file: "format" must be "{FORMAT}".')
    unknown = set(content) - {"format", "default", "subaccounts"}
    if unknown:
        raise PolicyFileError(f"Unknown top-level key {', '.join(sorted(unknown))}.")
    default = _rules("default", content.get("default"))
    named = content.get("subaccounts", {})
    if not isinstance(named, dict):
        raise PolicyFileError('"subaccounts" must be an object keyed by subaccount number.')
    subaccounts = {}
    for key, values in named.items():
        if not (key.isascii() and key.isdigit()) or int(key) > settings.OGPANEL_MAX_SUBACCOUNT:
            raise PolicyFileError(
                f"subaccounts: {key!r} is not a subaccount number from 0 to {settings.OGPANEL_MAX_SUBACCOUNT}."
            )
        if int(key) in subaccounts:
            raise PolicyFileError(f"subaccounts: {int(key)} is named twice.")
        subaccounts[int(key)] = _rules(f"subaccounts.{key}", values)
    return PolicyDocument(default, subaccounts)


@dataclass(frozen=True)
class Change:
    subaccount: int | None  # None: the default
    rules: policy.Rules
    follows_default: bool = False

    def __str__(self) -> str:
        where = "default" if self.subaccount is None else f"subaccount {self.subaccount}"
        return f"{where}: follow the default" if self.follows_default else f"{where}: {self.rules.as_dict()}"


def changes(document: PolicyDocument) -> list[Change]:
    """What importing the document would write, in order (the default first)."""
    now = current()
    found = []
    if document.default != now.default:
        found.append(Change(None, document.default))
    for number in range(settings.OGPANEL_MAX_SUBACCOUNT + 1):
        wanted, had = document.subaccounts.get(number), now.subaccounts.get(number)
        if wanted is not None and wanted != had:
            found.append(Change(number, wanted))
        elif wanted is None and had is not None:
            found.append(Change(number, policy.NO_POLICY, follows_default=True))
    return found


def apply(document: PolicyDocument, *, actor: Actor, reason: str) -> list[Change]:
    """Write what changed, each as its own audited version. No second person: the file's own review is that."""
    planned = changes(document)
    for change in planned:
        policy.policy_set(
            actor=actor,
            subaccount=change.subaccount,
            rules=change.rules,
            follows_default=change.follows_default,
            reason=reason,
        )
    return planned
