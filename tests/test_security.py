"""Cross-site requests and forms: what a page on another site can't make a browser do here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowdeck.settings import Settings
from tests.support.server import served
from tests.test_api import HELLO

TOKEN = "correct-horse-battery"


def form_token_of(page: httpx.Response) -> str:
    """The login form's hidden form token."""
    found = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'sec.db'}", allowed_hosts=["flows.example.com"])
    with served(settings) as url:
        yield url


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[str]:
    with served(Settings(database_url=f"sqlite:///{tmp_path / 'sec.db'}", auth_token=TOKEN)) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # same site, another port: SameSite cookies still go there
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_change_asked_from_another_site_is_refused(base: str, headers: dict[str, str]) -> None:
    response = httpx.post(f"{base}/api/flows", json=HELLO, headers=headers)
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "refused: a request from another site"},
    )
    assert httpx.get(f"{base}/api/flows", headers=headers).json()["items"] == []  # reading is fine


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a program: no Origin
        {"Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://flows.example.com"},  # a name the server is reached by, behind a proxy
    ],
)
def test_a_change_from_here_or_from_a_program_goes_through(base: str, headers: dict[str, str]) -> None:
    assert httpx.post(f"{base}/api/flows", json=HELLO, headers=headers).status_code == 201


def test_the_same_origin_goes_through(base: str) -> None:
    origin = base  # http://127.0.0.1:PORT, as a page of this server sends it
    assert httpx.post(f"{base}/api/flows", json=HELLO, headers={"Origin": origin}).status_code == 201


def test_the_login_form_is_accepted_only_with_its_own_form_token(secured: str) -> None:
    with httpx.Client(base_url=secured) as browser:
        page = browser.get("/login?next=/executions")
        form_token = form_token_of(page)
        assert browser.cookies["flowdeck_form"] == form_token
        forged = httpx.post(f"{secured}/login", data={"token": TOKEN, "next": "/"})  # no form cookie
        assert forged.status_code == 403
        wrong = browser.post("/login", data={"token": TOKEN, "form_token": "guess"})
        assert wrong.status_code == 403
        assert "flowdeck_token" not in browser.cookies
        signed_in = browser.post(
            "/login", data={"token": TOKEN, "next": "/executions", "form_token": form_token}
        )
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/executions")
        assert browser.cookies["flowdeck_token"] == TOKEN
        assert browser.get("/api/flows").status_code == 200


def test_a_wrong_token_shows_the_form_again_and_its_form_token_still_holds(secured: str) -> None:
    with httpx.Client(base_url=secured) as browser:
        page = browser.get("/login")
        form_token = form_token_of(page)
        browser.get("/login?next=/")  # another tab
        again = browser.post("/login", data={"token": "wrong", "form_token": form_token})
        assert again.status_code == 401
        assert "That token is not the right one." in again.text
        assert form_token_of(again) == form_token
        assert browser.post("/login", data={"token": TOKEN, "form_token": form_token}).status_code == 303
        assert "flowdeck_form" not in browser.cookies  # used up: the next sign-in gets a new one
