"""What den keeps to put saved work back on a restarted daemon, and who may
reach it: the access matrix of the deployment, code and probe endpoints, the
cluster's own token (which reads what runs on its cluster and nothing else),
bad input that changes nothing, and specs encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from datetime import timedelta

import pytest
from django.utils import timezone

from compute import services
from compute.models import ClusterState, Deployment
from registry.models import AccessGrant, AccessLevel, ApiToken, CodeBundle
from tests.factories import ResourceFactory, UserFactory, make_token
from tests.registry.test_access_matrix import (
    CALLERS,
    VISIBILITIES,
    _token_id,
    check_endpoint,
    effective_level,
)

R, W = AccessLevel.READ, AccessLevel.WRITE
FN = "/api/v1/resources/alice/fn"
NAME = "alice.fn-0123456789"


def _bundle() -> tuple[str, bytes]:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = b"def f(x):\n    return x + 1\n"
        info = tarfile.TarInfo("m.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = out.getvalue()
    return hashlib.sha256(raw).hexdigest(), raw


def _spec(code: str | None = None, **extra):
    return {"kind": "function", "address": "/alice/fn", "env": None, "code": code,
            "pointers": {"module": "m", "qualname": "f"}, **extra}


@pytest.fixture
def world(db):
    alice = UserFactory(username="alice")
    people = {name: UserFactory(username=name) for name in ("wendy", "rita", "sam")}

    def build(visibility: str = "private"):
        gpu = ResourceFactory(owner=alice, name="gpu", type="cluster",
                              config={"provider": "local"}, visibility=visibility)
        other = ResourceFactory(owner=alice, name="other", type="cluster",
                                config={"provider": "local"})
        fn = ResourceFactory(owner=alice, name="fn", type="function", visibility=visibility,
                             config={"system": "/alice/gpu", "pointers": {"module": "m",
                                                                          "qualname": "f"}})
        elsewhere = ResourceFactory(owner=alice, name="elsewhere", type="function",
                                    config={"system": "/alice/other"})
        for resource in (gpu, fn):
            AccessGrant.objects.create(resource=resource, user=people["wendy"], level=W)
            AccessGrant.objects.create(resource=resource, user=people["rita"], level=R)
        expired, revoked = make_token(alice), make_token(alice)
        ApiToken.objects.filter(pk=_token_id(expired)).update(
            expires_at=timezone.now() - timedelta(minutes=1))
        ApiToken.objects.filter(pk=_token_id(revoked)).update(revoked_at=timezone.now())
        tokens = {
            "owner": make_token(alice), "writer": make_token(people["wendy"]),
            "reader": make_token(people["rita"]), "stranger": make_token(people["sam"]),
            "read_token": make_token(alice, scope="read"), "expired": expired,
            "revoked": revoked, "anonymous": None,
        }
        state = ClusterState.objects.create(resource=gpu, status="up",
                                            daemon_url="http://127.0.0.1:9")
        tokens["cluster"] = services._mint_cluster_token(state, state.request_seq)
        other_state = ClusterState.objects.create(resource=other, status="up")
        tokens["other_cluster"] = services._mint_cluster_token(other_state, 0)
        return {"gpu": gpu, "fn": fn, "elsewhere": elsewhere, "people": people,
                "alice": alice}, tokens

    return build


def _save(api, token, spec=None, name=NAME):
    return api.as_token(token).put(f"{FN}/-/deployment", {"name": name, "spec": spec or _spec()},
                                   format="json")


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_saving_a_deployment_needs_write(world, api, caller, visibility):
    _, tokens = world(visibility)
    check_endpoint(api, tokens[caller],
                   ("deployment-put", "put", f"{FN}/-/deployment",
                    {"name": NAME, "spec": _spec()}, W, 200), caller, visibility)


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_only_the_clusters_own_token_reads_a_deployment(world, api, caller, visibility):
    _, tokens = world(visibility)
    code, raw = _bundle()
    CodeBundle.objects.create(sha256=code, data=raw, size=len(raw))
    assert _save(api, tokens["owner"], _spec(code)).status_code == 200
    for path in (f"{FN}/-/deployment", f"{FN}/-/deployment/code"):
        response = api.as_token(tokens[caller]).get(path)
        expected = 401 if caller in ("anonymous", "expired", "revoked") else 404
        assert response.status_code == expected, (path, caller, response.content[:200])
    cluster = api.as_token(tokens["cluster"])
    answer = cluster.get(f"{FN}/-/deployment")
    assert answer.status_code == 200, answer.content
    assert answer.json()["name"] == NAME and answer.json()["spec"] == _spec(code)
    assert answer.json()["code"] == code
    bundle = cluster.get(f"{FN}/-/deployment/code")
    assert bundle.status_code == 200 and bundle.content == raw
    # The cluster's token may not write it, nor read anything else.
    assert _save(api, tokens["cluster"]).status_code == 404
    assert cluster.get(FN).status_code == 403


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_probe_matrix(world, api, caller, visibility, settings):
    """A report any reader may make, read-only tokens included. (No worker
    answers here: tests/e2e/test_restarts.py has the probe's effect.)"""
    settings.DEN_CLUSTER_PROBE_WAIT_SECONDS = 0
    _, tokens = world(visibility)
    name = "cluster-probe"
    for path in ("/api/v1/resources/alice/gpu/-/cluster/probe", f"{FN}/-/cluster/probe"):
        if caller == "read_token":
            response = api.as_token(tokens[caller]).post(path)
            assert response.status_code == 200, (path, response.content[:200])
            continue
        check_endpoint(api, tokens[caller], (name, "post", path, None, R, 200), caller,
                       visibility)
    assert effective_level("owner", visibility) >= R


def test_a_clusters_token_reads_only_what_runs_on_it(world, api):
    objects, tokens = world()
    assert _save(api, tokens["owner"]).status_code == 200
    other = api.as_token(tokens["other_cluster"])
    assert other.get(f"{FN}/-/deployment").status_code == 404
    cluster = api.as_token(tokens["cluster"])
    for address in ("/alice/elsewhere", "/alice/gpu", "/alice/nothing", "/sam/fn"):
        response = cluster.get(f"/api/v1/resources{address}/-/deployment")
        assert response.status_code == 404, (address, response.content)
    # Pointed at another cluster since: the deployment is not given to this one.
    fn = objects["fn"]
    fn.config = {**fn.config, "system": "/alice/other"}
    fn.save()
    assert cluster.get(f"{FN}/-/deployment").status_code == 404
    assert other.get(f"{FN}/-/deployment").status_code == 404  # saved for gpu, not other


def test_what_a_writer_saved_is_not_put_back_once_they_lose_write_on_the_cluster(world, api):
    objects, tokens = world()
    assert _save(api, tokens["writer"]).status_code == 200
    cluster = api.as_token(tokens["cluster"])
    assert cluster.get(f"{FN}/-/deployment").status_code == 200
    AccessGrant.objects.filter(resource=objects["gpu"], user=objects["people"]["wendy"]).update(
        level=R)
    from registry.authcache import bump_access_epoch

    bump_access_epoch()
    response = cluster.get(f"{FN}/-/deployment")
    assert response.status_code == 404
    assert "state it had is lost" in response.json()["error"]["message"]


def test_a_writer_of_the_function_who_cannot_write_its_cluster_saves_nothing(world, api):
    objects, tokens = world()
    AccessGrant.objects.filter(resource=objects["gpu"], user=objects["people"]["wendy"]).update(
        level=R)
    response = _save(api, tokens["writer"])
    assert response.status_code == 403, response.content
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"name": NAME, "spec": _spec(address="/alice/other")}, "spec.address"),
    ({"name": NAME, "spec": _spec(kind="module")}, "spec.kind"),
    ({"name": NAME, "spec": _spec(code="0" * 64)}, "spec.code"),
    ({"name": NAME, "spec": _spec(code="not-a-hash")}, "spec.code"),
    ({"name": NAME, "spec": {"kind": "function", "address": "/alice/fn"}}, "spec.pointers"),
    ({"name": NAME, "spec": ["not", "a", "dict"]}, "spec"),
    ({"name": "no/slashes", "spec": _spec()}, "name"),
    ({"spec": _spec()}, "name"),
])
def test_bad_deployments_are_refused_naming_the_field(world, api, body, field):
    _, tokens = world()
    response = api.as_token(tokens["owner"]).put(f"{FN}/-/deployment", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert not Deployment.objects.exists()


def test_a_deployment_on_something_that_does_not_run_is_refused(world, api):
    _, tokens = world()
    response = api.as_token(tokens["owner"]).put(
        "/api/v1/resources/alice/gpu/-/deployment", {"name": NAME, "spec": _spec()},
        format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_runnable"


def test_specs_are_encrypted_at_rest(world, api):
    _, tokens = world()
    secret = "sk-constructor-argument-1234"
    init = base64.b64encode(secret.encode()).decode()
    by_value = base64.b64encode(b"the pickled function").decode()
    spec = {"kind": "function", "address": "/alice/fn", "by_value": by_value, "init": init}
    assert _save(api, tokens["owner"], spec).status_code == 200
    row = Deployment.objects.get()
    assert init not in row.spec_encrypted and by_value not in row.spec_encrypted
    answer = api.as_token(tokens["cluster"]).get(f"{FN}/-/deployment").json()
    assert answer["spec"]["init"] == init


def test_code_bundles(world, api, settings):
    _, tokens = world()
    code, raw = _bundle()
    owner = api.as_token(tokens["owner"])
    assert owner.head(f"/api/v1/code/{code}").status_code == 404
    put = owner.generic("PUT", f"/api/v1/code/{code}", raw, content_type="application/gzip")
    assert put.status_code == 201, put.content
    again = owner.generic("PUT", f"/api/v1/code/{code}", raw, content_type="application/gzip")
    assert again.status_code == 200
    assert owner.head(f"/api/v1/code/{code}").status_code == 200
    # Nobody reads a bundle back here.
    assert owner.get(f"/api/v1/code/{code}").status_code == 405
    wrong = owner.generic("PUT", f"/api/v1/code/{'0' * 64}", raw,
                          content_type="application/gzip")
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "sha256"
    for who, status in (("read_token", 403), ("cluster", 403), ("anonymous", 401)):
        response = api.as_token(tokens[who]).generic(
            "PUT", f"/api/v1/code/{'1' * 64}", raw, content_type="application/gzip")
        assert response.status_code == status, (who, response.content)
    settings.DEN_CODE_BUNDLE_MAX_MB = 0
    big = api.as_token(tokens["owner"]).generic("PUT", f"/api/v1/code/{code}", raw,
                                                content_type="application/gzip")
    assert big.status_code == 413
    assert CodeBundle.objects.count() == 1
