"""The pages do what a person asks of them: find, share, restore, manage
tokens and profile, join by invitation, reset a password."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from registry import services
from registry.models import AccessGrant, ApiToken, AuditEvent, PendingGrant, Resource
from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.conftest import text_of

pytestmark = pytest.mark.django_db
BASE = "/alice/train"


# Signing in and out ----------------------------------------------------------


def test_sign_in_and_out(team, page_client):
    client = page_client()
    page = client.get("/login?next=/alice/train")
    assert page.status_code == 200 and 'name="next" value="/alice/train"' in page.content.decode()
    wrong = client.submit("/login", {"username": "alice", "password": "nope", "next": "/alice/train"})
    assert wrong.status_code == 200 and "correct username and password" in text_of(wrong)
    right = client.submit("/login", {"username": "alice", "password": PASSWORD, "next": "/alice/train"})
    assert right.status_code == 302 and right["Location"] == "/alice/train"
    assert client.get("/").status_code == 200
    out = client.submit("/logout")
    assert out.status_code == 302 and out["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_sign_in_refuses_an_outside_next(team, page_client):
    client = page_client()
    response = client.submit("/login", {"username": "alice", "password": PASSWORD,
                                        "next": "https://evil.example.com/"})
    assert response["Location"] == "/"


# Dashboard, search, namespace --------------------------------------------------


def test_dashboard_lists_mine_shared_and_recent(team, page_client):
    ResourceFactory(owner=team.sam, name="public-data", visibility="public", type="env")
    ResourceFactory(owner=team.sam, name="hidden", visibility="unlisted")
    page = page_client(team.rita).get("/")
    html = page.content.decode()
    shared = html.split('id="shared-h"')[1].split("</section>")[0]
    assert "/alice/train" in shared and ">read<" in shared
    recent = html.split('id="recent-h"')[1]
    assert "/sam/public-data" in recent and "/sam/hidden" not in html
    assert "type-function" in html and "type-env" in html  # type icons
    assert re.search(r"<time datetime=\"[^\"]+\" title=\"[^\"]+\">(just now|\d+ \w+ ago)</time>", html)


def test_search_filters(team, page_client):
    ResourceFactory(owner=team.alice, name="gpu", type="cluster", config={"provider": "aws"},
                    description="Big GPU box", visibility="public")
    ResourceFactory(owner=team.sam, name="sam-env", type="env", visibility="public")
    client = page_client(team.rita)

    def found(query):
        response = client.get(f"/search?{query}")
        assert response.status_code == 200
        return set(re.findall(r'class="resource-link" href="([^"]+)"', response.content.decode()))

    assert found("") == {"/alice/train", "/alice/gpu", "/sam/sam-env"}
    assert found("q=gpu") == {"/alice/gpu"}
    assert found("q=big+gpu") == {"/alice/gpu"}
    assert found("type=env") == {"/sam/sam-env"}
    assert found("owner=alice") == {"/alice/train", "/alice/gpu"}
    assert found("visibility=private") == {"/alice/train"}
    assert found("shared=1") == {"/alice/train"}
    bad = client.get("/search?type=spaceship")
    assert bad.status_code == 422 and "Unknown resource type" in text_of(bad)


def test_search_paginates_with_a_cursor_and_htmx_fragments(team, page_client):
    for n in range(30):
        ResourceFactory(owner=team.alice, name=f"item{n:02d}")
    client = page_client(team.alice)
    first = client.get("/search?q=item")
    links = re.findall(r'class="resource-link" href="([^"]+)"', first.content.decode())
    assert len(links) == 25
    cursor = re.search(r'href="\?([^"]*cursor=[^"]+)"', first.content.decode()).group(1)
    more = client.get(f"/search?{cursor.replace('&amp;', '&')}", HTTP_HX_REQUEST="true",
                      HTTP_HX_TARGET="load-more")
    rest = re.findall(r'class="resource-link" href="([^"]+)"', more.content.decode())
    assert len(rest) == 5 and not set(rest) & set(links)
    assert "<html" not in more.content.decode()
    live = client.get("/search?q=item07", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results")
    assert live.content.decode().lstrip().startswith('<div id="results"')
    assert "/alice/item07" in live.content.decode()


def test_namespace_page(team, page_client):
    ResourceFactory(owner=team.alice, name="open", visibility="public")
    client = page_client(team.sam)
    html = client.get("/alice").content.decode()
    assert "/alice/open" in html and "/alice/train" not in html
    assert client.get("/nobody").status_code == 404


# The resource page ------------------------------------------------------------------


def test_overview_shows_config_and_snippets(team, page_client, settings):
    settings.DEN_PUBLIC_URL = "https://den.example.com"
    html = page_client(team.rita).get(BASE).content.decode()
    assert "Trains the model" in html
    assert "&quot;pointers&quot;: {\n" in html  # pretty-printed config
    assert 'den.function(name=&quot;/alice/train&quot;)' in html
    assert "Authorization: Bearer $DEN_TOKEN" in html
    assert "https://den.example.com/api/v1/resources/alice/train" in html
    assert 'data-copy="snippet-python"' in html


def test_other_types_load_by_url(team, page_client, settings):
    settings.DEN_PUBLIC_URL = "https://den.example.com"
    ResourceFactory(owner=team.alice, name="cpu", type="cluster", config={"provider": "local"})
    html = page_client(team.alice).get("/alice/cpu").content.decode()
    assert 'den.load(&quot;https://den.example.com/alice/cpu&quot;)' in html
    assert 'id="cluster-runtime"' in html


def test_diff_and_restore(team, page_client):
    services.resource_update_config(actor=team.alice, resource=team.train,
                                    config={"code": "sha256:2", "pointers": {"module": "new", "qualname": "train"}})
    client = page_client(team.wendy)
    diff = client.get(f"{BASE}/-/versions/1")
    html = diff.content.decode()
    assert diff.status_code == 200
    assert 'class="diff-changed"' in html and "sha256:1" in html and "sha256:2" in html
    assert "Restore version 1" in html
    same = client.get(f"{BASE}/-/versions/1?to=1").content.decode()
    assert "the same config" in same
    restored = client.submit(f"{BASE}/-/versions/1/restore")
    assert restored.status_code == 302 and restored["Location"] == f"{BASE}/-/versions"
    team.train.refresh_from_db()
    assert team.train.version == 3 and team.train.config["code"] == "sha256:1"
    listing = client.get(f"{BASE}/-/versions")
    assert "Restored version 1" in text_of(listing) and "restored from v1" in text_of(listing)


def test_share_by_username_and_email_then_revoke(team, page_client, django_capture_on_commit_callbacks):
    client = page_client(team.alice)
    with django_capture_on_commit_callbacks(execute=True):
        shared = client.submit(f"{BASE}/-/access", {"users": "sam, newbie@example.com", "level": "write"})
    assert shared.status_code == 302
    assert AccessGrant.objects.get(resource=team.train, user=team.sam).level == 2
    assert PendingGrant.objects.filter(resource=team.train, email="newbie@example.com").exists()
    assert len(mail.outbox) == 1 and "/invite/" in mail.outbox[0].body
    page = text_of(client.get(f"{BASE}/-/access"))
    assert "Gave sam write access" in page and "newbie@example.com" in page
    client.submit(f"{BASE}/-/access/revoke", {"who": "sam"})
    client.submit(f"{BASE}/-/access/revoke", {"who": "newbie@example.com"})
    assert not AccessGrant.objects.filter(resource=team.train, user=team.sam).exists()
    assert not PendingGrant.objects.filter(resource=team.train).exists()
    assert page_client(team.sam).get(BASE).status_code == 404


def test_share_errors_are_shown_by_the_form(team, page_client):
    client = page_client(team.alice)
    response = client.submit(f"{BASE}/-/access", {"users": "ghost", "level": "read"})
    assert response.status_code == 422
    assert "There is no user 'ghost'" in text_of(response)
    assert 'value="ghost"' in response.content.decode()


def test_share_with_htmx_answers_the_panel(team, page_client):
    client = page_client(team.alice)
    response = client.submit(f"{BASE}/-/access", {"users": "sam", "level": "read"},
                             HTTP_HX_REQUEST="true", HTTP_HX_TARGET="access-panel")
    html = response.content.decode()
    assert response.status_code == 200 and html.startswith('<section id="access-panel"')
    assert "Gave sam read access" in html


def test_visibility_description_and_delete(team, page_client):
    client = page_client(team.alice)
    client.submit(f"{BASE}/-/description", {"description": "Now with docs"})
    client.submit(f"{BASE}/-/visibility", {"visibility": "public"})
    team.train.refresh_from_db()
    assert team.train.description == "Now with docs" and team.train.visibility == "public"
    bad = client.submit(f"{BASE}/-/visibility", {"visibility": "galactic"})
    assert bad.status_code == 422
    wrong = client.submit(f"{BASE}/-/delete", {"confirm": "train"})
    assert wrong.status_code == 422 and Resource.objects.filter(pk=team.train.pk).exists()
    gone = client.submit(f"{BASE}/-/delete", {"confirm": BASE})
    assert gone.status_code == 302 and not Resource.objects.filter(pk=team.train.pk).exists()
    assert "Deleted /alice/train" in text_of(client.get("/"))


def test_audit_log(team, page_client):
    client = page_client(team.alice)
    client.submit(f"{BASE}/-/access", {"users": "sam", "level": "read"})
    html = text_of(client.get(f"{BASE}/-/audit"))
    assert "access.grant" in html and "user: sam" in html


# Settings ----------------------------------------------------------------------------


def test_tokens_are_shown_once_listed_and_revoked(team, page_client):
    client = page_client(team.alice)
    created = client.submit("/settings/tokens", {"name": "laptop", "scope": "read",
                                                 "expires_in_days": "30"})
    plain = re.search(r'value="(den_[A-Za-z0-9]+)"', created.content.decode()).group(1)
    assert created["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=team.alice, name="laptop")
    assert token.scope == "read"
    listing = client.get("/settings/tokens").content.decode()
    assert ">laptop<" in listing and plain not in listing and token.hint in listing
    client.submit(f"/settings/tokens/{token.pk}/revoke")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert ">laptop<" not in client.get("/settings/tokens").content.decode()


def test_token_errors_and_others_tokens(team, page_client):
    client = page_client(team.alice)
    bad = client.submit("/settings/tokens", {"name": "", "scope": "read", "expires_in_days": "30"})
    assert bad.status_code == 422 and "name must be" in text_of(bad)
    _, _ = services.token_create(user=team.sam, name="sams", scope="write")
    sams = ApiToken.objects.get(user=team.sam, name="sams")
    assert client.submit(f"/settings/tokens/{sams.pk}/revoke").status_code == 404
    sams.refresh_from_db()
    assert sams.revoked_at is None


def test_profile_and_password(team, page_client):
    client = page_client(team.alice)
    client.submit("/settings/profile", {"first_name": "Alice", "last_name": "Liddell"})
    team.alice.refresh_from_db()
    assert team.alice.get_full_name() == "Alice Liddell"
    weak = client.submit("/settings/password", {"old_password": PASSWORD, "new_password1": "abc",
                                                "new_password2": "abc"})
    assert weak.status_code == 422
    changed = client.submit("/settings/password", {"old_password": PASSWORD,
                                                   "new_password1": "a much better passphrase",
                                                   "new_password2": "a much better passphrase"})
    assert changed.status_code == 302
    assert client.get("/").status_code == 200  # still signed in here
    assert AuditEvent.objects.filter(actor=team.alice, action="user.password").exists()


# Invitations and password reset ------------------------------------------------------


def _invite_token(email: str) -> str:
    body = next(m.body for m in mail.outbox if email in m.to)
    return re.search(r"/invite/(\S+)", body).group(1)


def test_accept_an_invitation(team, page_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        page_client(team.alice).submit(f"{BASE}/-/access", {"users": "newbie@example.com", "level": "read"})
    token = _invite_token("newbie@example.com")
    client = page_client()
    assert client.get("/invite/den_bogus").status_code == 404
    page = client.get(f"/invite/{token}")
    assert page.status_code == 200 and "newbie@example.com" in text_of(page)
    differ = client.submit(f"/invite/{token}", {"username": "newbie", "password": "a fine passphrase",
                                                "password2": "another"})
    assert differ.status_code == 422 and "passwords differ" in text_of(differ)
    taken = client.submit(f"/invite/{token}", {"username": "alice", "password": "a fine passphrase",
                                               "password2": "a fine passphrase"})
    assert taken.status_code == 422 and "is taken" in text_of(taken)
    joined = client.submit(f"/invite/{token}", {"username": "newbie", "password": "a fine passphrase",
                                                "password2": "a fine passphrase"})
    assert joined.status_code == 302 and joined["Location"] == "/"
    assert client.get(BASE).status_code == 200
    assert client.get(f"/invite/{token}").status_code == 404  # used


def test_password_reset(team, page_client, settings):
    settings.DEN_PUBLIC_URL = "https://den.example.com"
    client = page_client()
    sent = client.submit("/password-reset", {"email": team.alice.email})
    assert sent.status_code == 302 and sent["Location"] == "/password-reset/sent"
    unknown = client.submit("/password-reset", {"email": "nobody@example.com"})
    assert unknown["Location"] == "/password-reset/sent"  # says nothing about who has an account
    assert len(mail.outbox) == 1
    found = re.search(r"(https?://[^/]+)(/password-reset/\S+)", mail.outbox[0].body)
    assert found.group(1) == settings.DEN_PUBLIC_URL  # never the request's Host header
    link = found.group(2)
    form = client.get(link, follow=True)
    assert "Choose a new password" in text_of(form)
    done = client.submit(form.redirect_chain[-1][0], {"new_password1": "brand new passphrase",
                                                      "new_password2": "brand new passphrase"})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done"
    team.alice.refresh_from_db()
    assert team.alice.check_password("brand new passphrase")


def test_static_assets_are_served_by_den(page_client, db):
    client = page_client()
    for name in ("htmx.min.js", "den.css", "den.js"):
        response = client.get(f"/static/frontend/{name}")
        assert response.status_code == 200, name
        b"".join(response.streaming_content)
    # whitenoise serves only files it knows; anything else falls through to the
    # (reserved) namespace route and is never a file.
    assert client.get("/static/../settings/__init__.py").status_code in (302, 400, 404)
    assert client.get("/static/frontend/nope.js").status_code in (302, 404)


def test_pages_are_accessible_shape(team, page_client):
    """Every input has a label, the page has a skip link, one h1, and a lang."""
    client = page_client(team.alice)
    for path in ["/", "/search", BASE, f"{BASE}/-/access", f"{BASE}/-/settings", "/settings/tokens",
                 "/settings/profile", f"{BASE}/-/versions/1"]:
        html = client.get(path).content.decode()
        assert '<html lang="en">' in html and 'class="skip-link"' in html, path
        assert html.count("<h1") == 1, path
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in tag:
                continue
            field_id = re.search(r'id="([^"]+)"', tag)
            assert field_id and field_id.group(1) in labels, f"{path}: unlabelled {tag}"


def test_user_created_without_email_still_sees_profile(page_client, db):
    user = UserFactory(username="mono", email="")
    assert page_client(user).get("/settings/profile").status_code == 200


def test_service_accounts_and_orgs_never_sign_in_to_the_web(team, page_client):
    """A service account has no password; given one anyway (an admin in the
    admin pages), the sign-in form still refuses it, and so does it an
    organisation's row. A session made for one by other means is not a
    session: the next page asks to sign in."""
    org = services.org_create(actor=team.alice, name="acme")
    account = services.service_account_create(actor=team.alice, org=org, name="ci")
    for row in (account.user, org):
        row.set_password(PASSWORD)
        row.save()
        client = page_client()
        refused = client.submit("/login", {"username": row.username, "password": PASSWORD})
        assert refused.status_code == 200 and "correct username and password" in text_of(refused)
        assert client.get("/")["Location"].startswith("/login")
        forced = page_client(row)
        assert forced.get("/").status_code == 302
        assert forced.get("/acme").status_code in (302, 404)
