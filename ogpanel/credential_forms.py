"""Forms for credentials (create, rotate, remove) and the subaccount → credential mapping.

A private key arrives pasted or as an uploaded PEM file. It is validated with
`kalshi.load_private_key` (whose messages never quote the key) and handed to the view as
`cleaned_data["private_key_pem"]`. A form with errors forgets the key before it is rendered
again, so a key never travels back to the browser.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import URLValidator

from ogpanel.forms import field_of
from ogpanel.kalshi import InvalidInput, load_private_key
from ogpanel.models import Credential, Subaccount

API_PREFIX = "/trade-api/v2"
MAX_KEY_FILE_BYTES = 64 * 1024  # a 4096-bit PEM is ~3.3 KB; anything far larger is not a key
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")  # sent in a header: no spaces, no control characters
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DUPLICATE_LABEL = "A credential with this label already exists."


class KeyForm(forms.Form):
    """The API key id and its private key: what create and rotate both take."""

    key_id = forms.CharField(
        label="API key id",
        max_length=100,
        help_text="The key id Kalshi shows next to the key (a UUID).",
    )
    private_key = forms.CharField(
        label="Private key (paste)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "autocomplete": "off", "spellcheck": "false", "class": "mono"}),
        help_text="The PEM text, from -----BEGIN ... PRIVATE KEY----- to the END line. Or upload the file below.",
    )
    private_key_file = forms.FileField(
        label="Private key (PEM file)",
        required=False,
        help_text="RSA, at least 2048 bits, PKCS#1 or PKCS#8, without a passphrase.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_dropped = False

    def clean_key_id(self) -> str:
        key_id = self.cleaned_data["key_id"].strip()
        if not KEY_ID_RE.fullmatch(key_id):
            raise forms.ValidationError("The API key id may contain only letters, digits, '.', '-' and '_'.")
        return key_id

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data  # what Form.clean returns
        pasted = cleaned.pop("private_key", "")
        upload = cleaned.pop("private_key_file", None)
        if pasted.strip() and upload:
            raise forms.ValidationError("Paste the key or upload the file, not both.")
        if upload and upload.size > MAX_KEY_FILE_BYTES:
            self.add_error("private_key_file", "This file is too large to be a private key.")
            return cleaned
        pem = (upload.read() if upload else pasted.encode()).replace(b"\r\n", b"\n").strip()
        if not pem:
            self.add_error("private_key", "Paste the private key or upload its PEM file.")
            return cleaned
        try:
            load_private_key(pem)
        except InvalidInput as exc:
            self.add_error("private_key_file" if upload else "private_key", exc.operator_message)
            return cleaned
        cleaned["private_key_pem"] = pem + b"\n"
        return cleaned

    def full_clean(self) -> None:
        super().full_clean()
        if self.errors:  # set by full_clean, so this does not clean again
            self._drop_key()

    def refuse(self, message: str, *, field: str | None = None) -> None:
        """Refuse a form that was valid (re-authentication failed, a concurrent save took its label);
        the key is dropped like on any error."""
        self.add_error(field, message)
        self._drop_key()

    def _drop_key(self) -> None:
        # Never send a key back: the page comes back with the key field empty.
        self.key_dropped = bool(self.data.get("private_key", "").strip()) or "private_key_file" in self.files
        data = self.data.copy() if isinstance(self.data, dict) else dict(self.data)  # a QueryDict copies as one
        data.pop("private_key", None)
        self.data = data
        self.cleaned_data.pop("private_key_pem", None)


class CredentialForm(KeyForm):
    label = forms.CharField(
        max_length=100, help_text="How operators will recognise this key, e.g. 'Desk A production'."
    )
    environment = forms.ChoiceField()
    custom_base_url = forms.CharField(
        label="Custom base URL",
        required=False,
        max_length=200,
        help_text=f"Only for 'Custom base URL': the API root, ending in {API_PREFIX}.",
    )
    account = forms.CharField(
        label="Kalshi account",
        required=False,
        max_length=100,
        help_text="Credentials of one Kalshi account share its rate budget: give them the same name. "
        "Leave blank if every key of this environment belongs to one account.",
    )
    tier = forms.ChoiceField(
        label="Rate-limit tier",
        required=False,
        help_text="The account's tier until the exchange reports its own (it is asked on every test). "
        "Blank: the panel's default.",
    )
    field_order = [
        "label",
        "environment",
        "custom_base_url",
        "account",
        "tier",
        "key_id",
        "private_key",
        "private_key_file",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        urls = settings.OGPANEL_BASE_URLS
        field_of(self, "environment", forms.ChoiceField).choices = [
            (value, f"{label} ({urls[value]})" if value in urls else label)
            for value, label in Credential.Environment.choices
        ]
        field_of(self, "tier", forms.ChoiceField).choices = [
            ("", f"Default ({settings.OGPANEL_KALSHI_TIER})"),
            *(Credential.tier.field.choices or ()),
        ]

    def clean_account(self) -> str:
        return self.cleaned_data["account"].strip()

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        if Credential.objects.filter(label__iexact=label).exists():
            raise forms.ValidationError(DUPLICATE_LABEL)
        return label

    def clean_custom_base_url(self) -> str:
        url = self.cleaned_data["custom_base_url"].strip().rstrip("/")
        environment = self.data.get("environment")
        if environment != Credential.Environment.CUSTOM:
            if url:
                raise forms.ValidationError("Leave this empty unless the environment is 'Custom base URL'.")
            return ""
        if not url:
            raise forms.ValidationError("Enter the base URL for the custom environment.")
        URLValidator(schemes=["https", "http"], message="Enter a URL starting with https://.")(url)
        parts = urlsplit(url)
        # Signed requests must not cross a network in clear text; plain http is for a local simulator.
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise forms.ValidationError("Use https://; plain http:// is allowed only for a simulator on this machine.")
        if not parts.path.endswith(API_PREFIX) or parts.query or parts.fragment:
            raise forms.ValidationError(f"The URL must end in {API_PREFIX}, with no query string.")
        return url


class RemoveForm(forms.Form):
    """Removal is refused while subaccounts use the credential, unless the admin also unmaps them.

    `seen` carries the subaccounts the confirmation page listed, so a mapping added since then
    is not removed without being seen.
    """

    unmap = forms.BooleanField(required=False)
    seen = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, in_use: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_use = in_use
        self.fields["seen"].initial = ",".join(map(str, in_use))
        if in_use:
            self.fields["unmap"].label = f"Also unmap {subaccounts_phrase(in_use)}"

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data  # what Form.clean returns
        if cleaned.get("seen", "") != ",".join(map(str, self.in_use)):
            raise forms.ValidationError(
                "The subaccounts using this credential changed since the page was loaded; it is now used by "
                f"{subaccounts_phrase(self.in_use) or 'no subaccount'}. Check and confirm again."
            )
        if self.in_use and not cleaned.get("unmap"):
            raise forms.ValidationError(
                f"This credential is still used by {subaccounts_phrase(self.in_use)}. Tick "
                f"\u201c{self.fields['unmap'].label}\u201d to remove it anyway; they leave the dashboard "
                "until they are mapped to another credential."
            )
        return cleaned


class SubaccountForm(forms.Form):
    """One row of the mapping page: map a subaccount to a credential (with a label), or unmap it."""

    op = forms.ChoiceField(choices=[("assign", "Save"), ("unassign", "Unmap")])
    credential = forms.ModelChoiceField(queryset=Credential.objects.all(), required=False)
    label = forms.CharField(max_length=100, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["number"] = forms.IntegerField(min_value=0, max_value=settings.OGPANEL_MAX_SUBACCOUNT)

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data  # what Form.clean returns
        if cleaned.get("op") == "assign" and not cleaned.get("credential"):
            self.add_error("credential", "Choose the credential this subaccount uses.")
        if cleaned.get("op") == "unassign" and "number" in cleaned:
            cleaned["subaccount"] = Subaccount.objects.filter(number=cleaned["number"]).first()
            if cleaned["subaccount"] is None:
                raise forms.ValidationError(f"Subaccount {cleaned['number']} is not mapped.")
        return cleaned


def subaccounts_phrase(numbers: list[int]) -> str:
    """ "subaccount 3" or "subaccounts 0, 1, 2"; "" for none."""
    if not numbers:
        return ""
    return f"subaccount{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"
