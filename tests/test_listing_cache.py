"""Shared listings (selectors.py): one upstream read serves every viewer and process.

The dashboard (stale_ok) is shown a listing past its lifetime at once while it is read again in
the background, so its polls never wait on the exchange; every other caller, and the dashboard
after a change, waits for a fresh read.
"""

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.cache import cache

from ogpanel import selectors


@pytest.fixture
def sub(subaccounts, settings):
    settings.OGPANEL_LIST_CACHE_SECONDS = 30  # nothing turns stale on its own during a test
    return subaccounts[1]


def reads(sim) -> int:
    return sum(record.method == "GET" for record in sim.requests)


def group_ids(listing: selectors.Listing) -> list[str]:
    return [group.id for group in listing.groups]


def make_stale(sub) -> None:
    """Age the shared listing past its lifetime, as if it had been read 31 s ago."""
    key = selectors._cache_key(sub)
    listing = cache.get(key)
    cache.set(key, replace(listing, fetched_at=listing.fetched_at - timedelta(seconds=31)), timeout=60)


def wait_for_background_read(sub) -> None:
    deadline = time.monotonic() + 10
    while not selectors._is_fresh(cache.get(selectors._cache_key(sub))):
        assert time.monotonic() < deadline, "the background read never landed"
        time.sleep(0.01)


def test_the_dashboard_is_shown_a_stale_listing_while_it_is_read_again_in_the_background(sim, sub):
    first = sim.create_group(1, 10)
    assert group_ids(selectors.listings([sub], stale_ok=True)[0]) == [first]
    second = sim.create_group(1, 20)
    make_stale(sub)

    assert group_ids(selectors.listings([sub], stale_ok=True)[0]) == [first]  # at once, as it was
    wait_for_background_read(sub)
    assert group_ids(selectors.listings([sub], stale_ok=True)[0]) == [first, second]
    assert reads(sim) == 2


def test_a_crowd_of_polls_on_a_stale_listing_causes_one_read(sim, sub):
    selectors.listings([sub])
    make_stale(sub)
    for _ in range(5):
        selectors.listings([sub], stale_ok=True)
    wait_for_background_read(sub)
    assert reads(sim) == 2


def test_every_other_caller_waits_for_a_fresh_listing(sim, sub):
    selectors.listings([sub])
    group = sim.create_group(1, 10)
    make_stale(sub)
    assert group_ids(selectors.listings([sub])[0]) == [group]
    assert reads(sim) == 2


def test_after_a_change_the_dashboard_waits_for_a_fresh_listing(sim, sub):
    selectors.listings([sub])
    group = sim.create_group(1, 10)
    selectors.forget_listing(sub)  # what every panel change does
    assert group_ids(selectors.listings([sub], stale_ok=True)[0]) == [group]
