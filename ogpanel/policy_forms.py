"""The policy edit form: one subaccount's policy (or the default's), as policy.Rules."""

from typing import Any

from django import forms

from ogpanel import policy
from ogpanel.forms import _reason_field, _whole_number
from ogpanel.kalshi import validate_contracts_limit
from ogpanel.models import PolicyVersion


class PolicyForm(forms.Form):
    follows_default = forms.BooleanField(
        label="Follow the default policy",
        required=False,
        help_text="This subaccount then has no policy of its own: the default's rules apply, as they change.",
    )
    contracts_limit_ceiling = forms.CharField(
        label="Ceiling on a group's contracts limit",
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text="Whole contracts, 1 to 1,000,000; empty for no ceiling.",
    )
    above_ceiling = forms.ChoiceField(
        label="A limit above the ceiling (new group or raised limit) is",
        choices=PolicyVersion.AboveCeiling.choices,
        widget=forms.RadioSelect,
    )
    require_active_group = forms.BooleanField(
        label="Every mapped subaccount must hold at least one active group",
        required=False,
        help_text="The trip watch reports a subaccount left with none.",
    )
    four_eyes = forms.MultipleChoiceField(
        label="Needs a second person",
        required=False,
        choices=[(name, words[0].upper() + words[1:]) for name, words in policy.FOUR_EYES.items()],
        widget=forms.CheckboxSelectMultiple,
        help_text="Tightening actions (trigger, kill switch trigger, lowering a limit) never wait.",
    )
    remediation = forms.ChoiceField(
        label="When the trip watch sees a group above the ceiling",
        choices=[("off", "Report it only"), *PolicyVersion.Remediation.choices[1:]],
        widget=forms.RadioSelect,
        help_text="Lowering or triggering runs as the system's own audited action.",
    )
    reason = _reason_field()
    base_version = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args: Any, default: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if default:
            del self.fields["follows_default"]

    @classmethod
    def initial_for(cls, rules: policy.Rules, *, follows_default: bool, base_version: int) -> dict:
        return {
            "follows_default": follows_default,
            "contracts_limit_ceiling": "" if rules.ceiling is None else str(rules.ceiling),
            "above_ceiling": rules.above_ceiling,
            "require_active_group": rules.require_active_group,
            "four_eyes": sorted(rules.four_eyes),
            "remediation": rules.remediation,
            "base_version": base_version,
        }

    def clean_contracts_limit_ceiling(self) -> int | None:
        raw = self.cleaned_data["contracts_limit_ceiling"].strip()
        return _whole_number(raw, validate_contracts_limit) if raw else None

    def rules(self) -> policy.Rules:
        data = self.cleaned_data
        return policy.Rules(
            data["contracts_limit_ceiling"],
            data["above_ceiling"],
            data["require_active_group"],
            frozenset(data["four_eyes"]),
            data["remediation"],
        )
