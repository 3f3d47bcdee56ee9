"""No page grows an N+1: a resource with 100 versions, 50 grants, pending
invitations and a long audit log costs the same queries as a small one."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry import services
from registry.models import AccessGrant, AccessLevel, AuditEvent, PendingGrant, ResourceVersion
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db

# page -> most queries it may make (the session and user lookups included);
# the dashboard and search list my organisations (one query), the access
# page the team grants (one query)
PAGES = {
    "/": 6,
    "/search?q=model": 4,
    "/alice": 4,
    "/alice/model": 4,
    "/alice/model/-/versions": 4,
    "/alice/model/-/versions/1": 5,
    "/alice/model/-/access": 6,
    "/alice/model/-/audit": 4,
    "/alice/model/-/settings": 3,
    "/settings/tokens": 3,
}


def build(size: int):
    """alice's /alice/model with ``size`` versions, ``size // 2`` grants,
    pending invitations and audit rows; plus as many other resources to list."""
    alice = UserFactory(username="alice")
    model = ResourceFactory(owner=alice, name="model", visibility="private")
    ResourceVersion.objects.bulk_create(
        ResourceVersion(resource=model, number=n, type="resource", config={"n": n}, author=alice)
        for n in range(2, size + 1)
    )
    model.version = size
    model.save()
    people = [UserFactory() for _ in range(size // 2)]
    AccessGrant.objects.bulk_create(
        AccessGrant(resource=model, user=person, level=AccessLevel.READ, granted_by=alice)
        for person in people
    )
    PendingGrant.objects.bulk_create(
        PendingGrant(resource=model, email=f"p{n}@example.com", level=1, invited_by=alice)
        for n in range(size // 4)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(actor=alice, actor_username="alice", action="resource.update", resource=model,
                   address=model.address, data={"version": n})
        for n in range(size)
    )
    for n in range(size // 2):
        other = ResourceFactory(owner=people[n], name=f"model-{n}", visibility="public")
        AccessGrant.objects.create(resource=other, user=alice, level=AccessLevel.WRITE)
        ResourceFactory(owner=alice, name=f"model-mine-{n}")
    for _ in range(max(1, size // 20)):
        make_token(alice)
    services.token_create(user=alice, name="ci", scope="read")
    return alice


def count_queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(queries)


@pytest.mark.parametrize("path", list(PAGES))
def test_query_count_does_not_grow(path, client, django_assert_max_num_queries):
    alice = build(100)
    client.force_login(alice)
    with django_assert_max_num_queries(PAGES[path]):
        assert client.get(path).status_code == 200


def test_small_and_large_cost_the_same(client):
    alice = build(2)
    client.force_login(alice)
    small = {path: count_queries(client, path) for path in PAGES}
    from registry.models import User

    User.objects.all().delete()
    alice = build(100)
    client.force_login(alice)
    large = {path: count_queries(client, path) for path in PAGES}
    assert small == large
