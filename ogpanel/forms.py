"""Forms for order-group operations and the kill switch.

Numbers are checked with kalshi.py's own validators, so the panel and the client refuse the
same values with the same words, and a refused value never reaches the exchange.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

from django import forms
from django.conf import settings

from ogpanel.kalshi import InvalidInput, validate_contracts_limit, validate_exchange_index, validate_subaccount
from ogpanel.models import Subaccount

# Up to 20 digits: more than any value the API takes, and int() refuses strings past 4,300 digits.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,20}")


def field_of[F: forms.Field](form: forms.BaseForm, name: str, kind: type[F]) -> F:
    """`form.fields[name]` as the kind of field the form declares there (`fields` only says Field)."""
    field = form.fields[name]
    if not isinstance(field, kind):
        raise TypeError(f"{type(form).__name__}.{name} is a {type(field).__name__}, not a {kind.__name__}")
    return field


def _whole_number(raw: str, validator: Callable[[Any], int]) -> int:
    """Text → int for kalshi's validators; anything that is not plain digits fails their rule unchanged."""
    text = raw.strip()
    try:
        return validator(int(text) if _WHOLE_NUMBER.fullmatch(text) else text)
    except InvalidInput as exc:
        raise forms.ValidationError(exc.operator_message) from None


def _reason_field(*, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label="Reason" if required else "Reason (optional)",
        required=required,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit log with your name.",
        error_messages={"required": "Give a reason: it goes into the audit log."},
    )


def _limit_field(label: str) -> forms.CharField:
    # A text box in numeric mode rather than type=number: the browser must not silently
    # round "1.5" or drop "abc" before the server can say why it is refused.
    return forms.CharField(
        label=label,
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text="Whole contracts, 1 to 1,000,000.",
    )


def _subaccount_choices(subaccounts: list[Subaccount]) -> list[tuple[str, str]]:
    return [(str(sub.number), str(sub)) for sub in subaccounts]


def _subaccount_from(raw: str, subaccounts: list[Subaccount]) -> Subaccount:
    """One of the given (configured, in-scope) subaccounts, or a form error naming why not."""
    number = _whole_number(raw, lambda value: validate_subaccount(value, settings.OGPANEL_MAX_SUBACCOUNT))
    for sub in subaccounts:
        if sub.number == number:
            return sub
    raise forms.ValidationError(f"Subaccount {number} is not configured in this panel, or not one you may act on.")


class DashboardFilterForm(forms.Form):
    """The dashboard's GET filters; also carried in its self-refresh URL."""

    subaccount = forms.TypedChoiceField(label="Subaccount", required=False, coerce=int, empty_value=None)
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any state"), ("active", "Active"), ("triggered", "Triggered")],
    )

    def __init__(self, data: Mapping[str, Any] | None = None, *, subaccounts: list[Subaccount]) -> None:
        # Ids prefixed so the filter never clashes with a form opened in the page's action panel.
        super().__init__(data, auto_id="filter_%s")
        field_of(self, "subaccount", forms.TypedChoiceField).choices = [
            ("", "All subaccounts"),
            *_subaccount_choices(subaccounts),
        ]


class GroupCreateForm(forms.Form):
    subaccount = forms.CharField(label="Subaccount", widget=forms.Select)
    contracts_limit = _limit_field("Contracts limit")
    exchange_index = forms.CharField(
        label="Exchange index",
        initial="0",
        max_length=10,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text="0 unless the exchange says otherwise; it is the only shard today.",
    )
    reason = _reason_field(required=False)

    def __init__(self, *args: Any, subaccounts: list[Subaccount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subaccounts = subaccounts
        self.fields["subaccount"].widget.choices = _subaccount_choices(subaccounts)

    def clean_subaccount(self) -> Subaccount:
        return _subaccount_from(self.cleaned_data["subaccount"], self.subaccounts)

    def clean_contracts_limit(self) -> int:
        return _whole_number(self.cleaned_data["contracts_limit"], validate_contracts_limit)

    def clean_exchange_index(self) -> int:
        return _whole_number(self.cleaned_data["exchange_index"], validate_exchange_index)


class GroupLimitForm(forms.Form):
    contracts_limit = _limit_field("New contracts limit")
    reason = _reason_field(required=False)

    def clean_contracts_limit(self) -> int:
        return _whole_number(self.cleaned_data["contracts_limit"], validate_contracts_limit)


class GroupActionForm(forms.Form):
    """Confirmation of a reset, trigger or delete: the reason is the confirmation."""

    reason = _reason_field()


class KillSwitchForm(forms.Form):
    """The kill switch. Triggering is one press (the preview above the button is the confirmation) and
    the reason may follow later; a reset loosens risk, so it wants a reason and the word RESET."""

    TRIGGER_ONE = "trigger_one"
    TRIGGER_ALL = "trigger_all"
    RESET_ONE = "reset_one"
    OPERATIONS = [
        (TRIGGER_ONE, "Trigger every group on one subaccount"),
        (TRIGGER_ALL, "Trigger every group on every subaccount I may act on"),
        (RESET_ONE, "Reset every triggered group on one subaccount"),
    ]

    operation = forms.ChoiceField(label="What to do", choices=OPERATIONS, widget=forms.RadioSelect)
    subaccount = forms.CharField(
        label="Subaccount",
        required=False,
        widget=forms.Select,
        help_text="The one subaccount to act on.",
    )
    reason = forms.CharField(
        label="Reason",
        required=False,  # clean() asks for it on a reset; a trigger's may follow as a note
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit log with your name.",
    )
    confirm = forms.CharField(
        label="Type the word RESET to confirm",
        required=False,  # clean() names the word that is missing
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="A reset lets orders naming these groups trade again.",
    )

    def __init__(self, *args: Any, subaccounts: list[Subaccount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subaccounts = subaccounts
        self.fields["subaccount"].widget.choices = [("", "— choose —"), *_subaccount_choices(subaccounts)]

    @property
    def triggering(self) -> bool:
        return self.cleaned_data["operation"] != self.RESET_ONE

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data  # what Form.clean returns
        operation = data.get("operation")
        if operation is None:
            return data
        if operation == self.TRIGGER_ALL:
            data["targets"] = list(self.subaccounts)
            if not self.subaccounts:
                self.add_error("operation", "You may not act on any configured subaccount.")
        elif not data.get("subaccount"):
            self.add_error("subaccount", "Choose the subaccount.")
        else:
            try:
                data["targets"] = [_subaccount_from(data["subaccount"], self.subaccounts)]
            except forms.ValidationError as exc:
                self.add_error("subaccount", exc)
        if operation == self.RESET_ONE:
            if not data.get("reason", "").strip():
                self.add_error("reason", "Give a reason: it goes into the audit log.")
            if data.get("confirm", "").strip() != "RESET":
                self.add_error("confirm", "Type RESET to confirm.")
        return data


class SweepNoteForm(forms.Form):
    """A reason added to a sweep after it started."""

    note = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit log with your name, attached to this kill switch.",
        error_messages={"required": "Write the reason first."},
    )
