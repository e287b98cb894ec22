"""The panel's database unreachable: every page answers in time with a message, never a hang or a traceback.

The panel runs under gunicorn in its own process. Its database is, in turn: a SQLite file whose
directory is gone (moved away mid-test, then put back: the panel carries on without a restart), a
PostgreSQL port where nothing listens, and one that accepts connections and never answers (a
blackhole: the connect timeout must end the wait).
"""

import html
import socket
import time

import pytest
import requests

from ogpanel.simulator import start
from ogpanel.views.errors import DATABASE_DOWN
from tests.conftest import SIM_KEY_ID
from tests.panel_process import PanelProcess, free_port, panel_environment, prepare_database

CONNECT_TIMEOUT = 2  # OGPANEL_DATABASE_CONNECT_TIMEOUT for these panels (libpq waits 2 s at least)
MARGIN = 3.0  # gunicorn, Django and the HTTP client on a busy machine
PAGES = ["/", "/audit/", "/kill-switch/", "/credentials/", "/groups/1/og_1/", "/subaccounts/", "/audit/export.csv"]


def assert_every_page_says_the_database_is_down(
    panel: PanelProcess, *, budget: float, pages: list[str] = PAGES
) -> None:
    for path in pages:
        for htmx in (False, True):
            began = time.monotonic()
            response = panel.get(path, headers={"HX-Request": "true"} if htmx else {})
            elapsed = time.monotonic() - began
            assert elapsed < budget, f"{path} took {elapsed:.1f} s"
            text = html.unescape(response.text)
            assert response.status_code == 503, (path, response.status_code, text[:300])
            assert DATABASE_DOWN in text and "Traceback" not in text
            assert response.headers["Retry-After"] == "5"
            if htmx:  # a fragment for the page's flash area, not a page inside a table cell
                assert response.headers["HX-Retarget"] == "#flash" and "<html" not in text
    health = requests.get(panel.url + "/healthz", timeout=30)  # as a probe asks: no session cookie
    assert (health.status_code, health.json()["database"]) == (503, "unavailable")


def test_pages_answer_with_a_message_while_the_sqlite_database_is_gone_and_recover_after(
    tmp_path, rsa_public_pem, rsa_pem
):
    sim = start()
    sim.add_key(SIM_KEY_ID, rsa_public_pem)
    home = tmp_path / "db"
    home.mkdir()
    env = panel_environment(home / "panel.sqlite3")
    prepare_database(env, sim.base_url, rsa_pem, [{"label": "sim", "key_id": SIM_KEY_ID, "subaccounts": [0, 1]}])
    panel = PanelProcess(env, tmp_path / "panel.log")
    try:
        panel.log_in("ada")
        assert panel.get("/").status_code == 200

        home.rename(tmp_path / "elsewhere")  # the disk it lived on went away
        assert_every_page_says_the_database_is_down(panel, budget=MARGIN)

        (tmp_path / "elsewhere").rename(home)
        assert panel.get("/").status_code == 200  # the same process, the same session: back as it was
        assert panel.get("/audit/").status_code == 200
    finally:
        panel.stop()
        sim.stop()


@pytest.fixture
def blackhole():
    """A port that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("where", ["nothing listening", "never answers"])
def test_pages_answer_with_a_message_while_postgresql_is_unreachable(tmp_path, where, blackhole):
    port = free_port() if where == "nothing listening" else blackhole
    env = panel_environment(
        tmp_path / "unused.sqlite3",
        DATABASE_URL=f"postgresql://panel@127.0.0.1:{port}/panel",
        OGPANEL_DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
    )
    panel = PanelProcess(env, tmp_path / "panel.log")
    try:
        # Signing in needs the database: the sign-in form (which does not) says why it failed.
        token = panel.csrf_token("/accounts/login/")
        began = time.monotonic()
        response = panel.session.post(
            panel.url + "/accounts/login/",
            {"username": "ada", "password": "ada-password-1", "csrfmiddlewaretoken": token},
            timeout=30,
        )
        assert time.monotonic() - began < CONNECT_TIMEOUT + MARGIN
        assert response.status_code == 503 and DATABASE_DOWN in html.unescape(response.text)
        # A session cookie, as a signed-in operator's browser holds: the session is in the database.
        panel.session.cookies.set("sessionid", "a" * 32, domain="127.0.0.1")
        # Each page waits out one connect timeout against the blackhole: a few pages say it for all.
        pages = PAGES if where == "nothing listening" else ["/", "/kill-switch/"]
        assert_every_page_says_the_database_is_down(panel, budget=CONNECT_TIMEOUT + MARGIN, pages=pages)
    except requests.RequestException as exc:
        pytest.fail(f"the panel did not answer: {exc}")
    finally:
        panel.stop()
