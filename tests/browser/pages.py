"""Every page of the panel, with the data each needs, for the tests that visit them all (phone, axe).

`every_page()` makes a small book (groups active and triggered, a finished kill-switch sweep, audit
events) and returns, per role, the pages that role can open: (name, path) pairs. Signing in
(`sign_in`) goes through the real login form.
"""

from dataclasses import dataclass

from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page

from ogpanel import jobs, sweeps
from ogpanel.audit import Actor
from ogpanel.models import AuditEvent, Credential, Subaccount

DESK = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Book:
    active: str  # a group on subaccount 1, active
    triggered: str  # a group on subaccount 1, triggered
    credential: int
    sweep: int
    event: int


def make_book(sim, subaccounts: list[Subaccount], credential: Credential) -> Book:
    active = sim.create_group(1, 100)
    triggered = sim.create_group(1, 10)
    sim.fill(sim.place_order(1, triggered, count=5), 11)
    for number in (0, 2, 3):
        sim.create_group(number, 50)
    swept = sim.create_group(3, 20)
    started = jobs.kill_switch(
        actor=Actor.system("drill"), subaccounts=[subaccounts[3]], reason="drill", action=sweeps.TRIGGER
    )
    assert jobs.wait_idle(timeout=30)
    assert sim.group(swept)["triggered"]
    sweep = started.sweep or started.joined[0]
    return Book(active, triggered, credential.pk, sweep.pk, AuditEvent.objects.order_by("-seq").first().seq)


def admin_pages(book: Book) -> list[tuple[str, str]]:
    group, tripped = book.active, book.triggered
    return [
        ("dashboard", "/"),
        ("dashboard filtered", "/?subaccount=1"),
        ("group", f"/groups/1/{group}/"),
        ("trigger", f"/groups/1/{group}/trigger/"),
        ("reset", f"/groups/1/{tripped}/reset/"),
        ("delete", f"/groups/1/{group}/delete/"),
        ("limit", f"/groups/1/{group}/limit/"),
        ("new group", "/groups/new/"),
        ("kill switch", "/kill-switch/"),
        ("kill switch, one subaccount", "/kill-switch/?subaccount=2"),
        ("sweep", f"/kill-switch/sweeps/{book.sweep}/"),
        ("audit log", "/audit/"),
        ("audit event", f"/audit/{book.event}/"),
        ("credentials", "/credentials/"),
        ("add credential", "/credentials/new/"),
        ("credential", f"/credentials/{book.credential}/"),
        ("rotate", f"/credentials/{book.credential}/rotate/"),
        ("remove credential", f"/credentials/{book.credential}/remove/"),
        ("subaccounts", "/subaccounts/"),
        ("policy", "/policy/"),
        ("edit a subaccount's policy", "/policy/1/"),
        ("edit the default policy", "/policy/default/"),
        ("requests", "/requests/"),
        ("two-factor setup", "/accounts/2fa/setup/"),
        ("re-authentication", "/accounts/reauth/?next=/subaccounts/"),
        ("not found", "/groups/1/not-a-group!/"),
    ]


def viewer_pages(book: Book) -> list[tuple[str, str]]:
    return [("dashboard", "/"), ("group", f"/groups/1/{book.triggered}/"), ("audit log", "/audit/")]


def sign_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(f"{user.get_username()}-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def new_page(browser: Browser, viewport: dict) -> Page:
    context = browser.new_context(viewport=viewport, has_touch=viewport is PHONE)
    context.set_default_timeout(10_000)
    return context.new_page()
