"""A den whose DEN_PUBLIC_URL is https: secure cookies and HSTS follow, and a
proxy's X-Forwarded-Proto is believed only when DEN_NUM_PROXIES says there is
a proxy. Checked from the outside, on a den serving plain HTTP on loopback as
it would behind a proxy that ends TLS."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.e2e

PUBLIC = "https://den.example.com"
HOSTS = "den.example.com,127.0.0.1"
VIA_PROXY = {"Host": "den.example.com", "X-Forwarded-Proto": "https",
             "X-Forwarded-For": "203.0.113.7"}


def sign_in_page(den, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{den.url}/login", headers=headers, timeout=30)


def csrf_cookie(response: httpx.Response) -> str:
    header = next(v for k, v in response.headers.multi_items()
                  if k.lower() == "set-cookie" and v.startswith("csrftoken="))
    return header


def test_behind_a_proxy_that_ends_tls(make_den):
    den = make_den(DEN_PUBLIC_URL=PUBLIC, DEN_ALLOWED_HOSTS=HOSTS, DEN_NUM_PROXIES="1")
    den.start()
    den.seed("alice")
    page = sign_in_page(den, VIA_PROXY)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookie = csrf_cookie(page)
    assert re.search(r";\s*Secure", cookie), cookie
    # Signing in through the proxy passes Django's CSRF origin check.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    with httpx.Client(base_url=den.url, headers=VIA_PROXY, timeout=30) as browser:
        browser.cookies.set("csrftoken", cookie.split(";")[0].split("=", 1)[1])
        signed_in = browser.post("/login", data={
            "csrfmiddlewaretoken": token, "username": "alice", "password": "pw pw pw 1234"},
            headers={"Origin": PUBLIC, "Referer": f"{PUBLIC}/login"})
    assert signed_in.status_code == 302, signed_in.text[:500]
    session = next(v for k, v in signed_in.headers.multi_items()
                   if k.lower() == "set-cookie" and v.startswith("sessionid="))
    assert re.search(r";\s*Secure", session) and "HttpOnly" in session
    # Plain HTTP past the proxy: not a secure request, so no HSTS header.
    plain = sign_in_page(den, {"Host": "den.example.com"})
    assert "Strict-Transport-Security" not in plain.headers


def test_without_a_proxy_x_forwarded_proto_is_not_believed(make_den):
    den = make_den(DEN_PUBLIC_URL=PUBLIC, DEN_ALLOWED_HOSTS=HOSTS)  # DEN_NUM_PROXIES=0
    den.start()
    page = sign_in_page(den, VIA_PROXY)
    assert page.status_code == 200
    assert "Strict-Transport-Security" not in page.headers  # a client's header, not a proxy's
    assert re.search(r";\s*Secure", csrf_cookie(page))  # cookies still HTTPS-only


def test_a_plain_http_den_keeps_plain_cookies(make_den):
    den = make_den()  # DEN_PUBLIC_URL http://127.0.0.1:8000
    den.start()
    page = sign_in_page(den, {"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in page.headers
    assert not re.search(r";\s*Secure", csrf_cookie(page))
