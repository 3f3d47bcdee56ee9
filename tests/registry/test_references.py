"""References to other resources in a config (a function's or module's
``system`` and ``env``, a cluster's ``creds``) are checked on every write path
against the type being saved and the writer's own access: a reference the
writer may not read is a 400 naming the field, worded the same whether the
target is missing or hidden, and nothing changes."""

from __future__ import annotations

import pytest

from registry.models import AccessGrant, AccessLevel, Resource, ResourceVersion
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    ResourceFactory(owner=alice, name="gpu", type="cluster", config={"provider": "local"})
    ResourceFactory(owner=alice, name="key", type="secret", config={"provider": "ssh"})
    ResourceFactory(owner=alice, name="sk", type="env", config={"reqs": ["numpy"]})
    ResourceFactory(owner=alice, name="shared-gpu", type="cluster", config={"provider": "local"})
    ResourceFactory(owner=bob, name="cpu", type="cluster", config={"provider": "local"})
    ResourceFactory(owner=bob, name="bob-env", type="env", config={})
    thing = ResourceFactory(owner=alice, name="thing", type="resource", config={"x": 1})
    AccessGrant.objects.create(resource=thing, user=bob, level=AccessLevel.WRITE)
    AccessGrant.objects.create(resource=Resource.objects.get(name="shared-gpu"), user=bob,
                               level=AccessLevel.READ)
    return {
        "alice": TokenClient().as_token(make_token(alice)),
        "bob": TokenClient().as_token(make_token(bob)),
    }


def _state(name):
    resource = Resource.objects.get(name=name)
    return resource.type, resource.config, resource.version, ResourceVersion.objects.filter(
        resource=resource).count()


def _refused(response, field):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field, error
    return error["message"]


def test_retyping_a_resource_into_a_function_checks_its_system(world):
    """The reported attack: save as ``resource`` (no references), then change
    the type so that the same ``system`` points at the owner's private cluster."""
    bob = world["bob"]
    saved = bob.put("/api/v1/resources/alice/thing",
                    {"type": "resource", "config": {"system": "/alice/gpu"}}, format="json")
    assert saved.status_code == 200  # a plain resource has no references
    before = _state("thing")
    hidden = _refused(bob.put("/api/v1/resources/alice/thing",
                              {"type": "function", "config": {"system": "/alice/gpu"}},
                              format="json"), "config.system")
    missing = _refused(bob.put("/api/v1/resources/alice/thing",
                               {"type": "function", "config": {"system": "/alice/nothing"}},
                               format="json"), "config.system")
    assert hidden.replace("/alice/gpu", "X") == missing.replace("/alice/nothing", "X")
    assert _state("thing") == before
    assert Resource.objects.get(name="thing").type == "resource"
    assert bob.get("/api/v1/resources/alice/thing/-/cluster").status_code != 200


def test_a_module_is_checked_like_a_function(world):
    _refused(world["bob"].put("/api/v1/resources/alice/thing",
                              {"type": "module", "config": {"system": "/alice/gpu"}},
                              format="json"), "config.system")


@pytest.mark.parametrize(
    ("type_", "config", "field"),
    [
        ("function", {"system": "/alice/gpu"}, "config.system"),
        ("function", {"system": "/bob/cpu", "env": "/alice/sk"}, "config.env"),
        ("cluster", {"provider": "ssh", "ips": ["10.0.0.1"], "creds": "/alice/key"}, "config.creds"),
    ],
)
def test_creating_with_a_reference_the_writer_cannot_read_is_refused(world, type_, config, field):
    for method in ("post", "put"):
        body = {"type": type_, "config": config}
        if method == "post":
            response = world["bob"].post("/api/v1/resources", {"address": "/bob/new", **body},
                                         format="json")
        else:
            response = world["bob"].put("/api/v1/resources/bob/new", body, format="json")
        _refused(response, field)
    assert not Resource.objects.filter(name="new").exists()


def test_references_the_writer_can_read_are_fine(world):
    bob = world["bob"]
    created = bob.post("/api/v1/resources", {
        "address": "/bob/train", "type": "function",
        "config": {"system": "/alice/shared-gpu", "env": "/bob/bob-env"},
    }, format="json")
    assert created.status_code == 201, created.content
    own = world["alice"].put("/api/v1/resources/alice/train", {
        "type": "function", "config": {"system": "/alice/gpu", "env": {"reqs": ["x"]}},
    }, format="json")
    assert own.status_code == 201, own.content


def test_a_reference_must_name_a_resource_of_the_right_type(world):
    message = _refused(world["bob"].put("/api/v1/resources/bob/train", {
        "type": "function", "config": {"system": "/bob/bob-env"},
    }, format="json"), "config.system")
    assert "env" in message and "cluster" in message


def test_restoring_an_old_version_checks_the_restorers_access(world):
    """The owner once pointed /alice/thing at her private cluster; a writer
    who cannot see that cluster may not bring the pointer back."""
    alice, bob = world["alice"], world["bob"]
    assert alice.put("/api/v1/resources/alice/thing",
                     {"type": "function", "config": {"system": "/alice/gpu"}},
                     format="json").status_code == 200
    assert alice.put("/api/v1/resources/alice/thing",
                     {"type": "resource", "config": {}}, format="json").status_code == 200
    version_with_pointer = Resource.objects.get(name="thing").version - 1
    before = _state("thing")
    _refused(bob.post(f"/api/v1/resources/alice/thing/-/versions/{version_with_pointer}/restore"),
             "config.system")
    assert _state("thing") == before
    # The owner, who can see her cluster, may.
    assert alice.post(
        f"/api/v1/resources/alice/thing/-/versions/{version_with_pointer}/restore"
    ).status_code == 201


def test_restoring_through_the_web_page_is_checked_too(world, client):
    alice = world["alice"]
    alice.put("/api/v1/resources/alice/thing",
              {"type": "function", "config": {"system": "/alice/gpu"}}, format="json")
    alice.put("/api/v1/resources/alice/thing", {"type": "resource", "config": {}}, format="json")
    number = Resource.objects.get(name="thing").version - 1
    before = _state("thing")
    client.force_login(Resource.objects.get(name="cpu").owner)
    response = client.post(f"/alice/thing/-/versions/{number}/restore")
    assert response.status_code in (302, 400, 422)
    assert _state("thing") == before
