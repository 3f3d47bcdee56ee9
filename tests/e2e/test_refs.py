"""Refs: results kept on the cluster that made them (``fn.remote(...)`` -> ``den.Ref``),
passed to functions there without a trip through the caller, fetched, deleted,
expired, refused to callers who may not read the function that made them, and
refused (clearly) on another cluster."""

from __future__ import annotations

import array
import json
import pickle
import time

import pytest

import den
from tests.e2e import remote_fns
from tests.e2e.conftest import AUTH_CACHE_SECONDS, up_cluster

pytestmark = pytest.mark.e2e


def test_a_ref_stays_on_the_cluster_and_resolves_there(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("cpu", cleanup_clusters)
    make = den.function(remote_fns.make_array).to(cpu).save()
    total = den.function(remote_fns.total).to(cpu).save()

    ref = make.remote(100_000)
    assert isinstance(ref, den.Ref)
    assert (ref.cluster, ref.type, ref.size) == ("/alice/cpu", "array.array", 800_000)
    assert ref.function == "/alice/make_array" and ref.owner == "alice"
    assert ref.expires_at > time.time() + 86000
    # A few hundred bytes, however large the array: it fits in an XCom.
    assert len(pickle.dumps(ref)) < 600 and len(json.dumps(ref.to_json())) < 400
    assert den.Ref.from_json(json.loads(json.dumps(ref.to_json()))) == ref

    # The function gets the array itself (total asserts it), anywhere in its arguments.
    assert total(ref) == float(sum(range(100_000)))
    assert total(values=ref) == float(sum(range(100_000)))
    assert ref.get() == array.array("d", range(100_000))
    # A ref that came back through pickle (an XCom, a file) works the same.
    assert total(pickle.loads(pickle.dumps(ref))) == float(sum(range(100_000)))

    ref.delete()
    with pytest.raises(den.RefNotFound, match="deleted"):
        total(ref)
    with pytest.raises(den.RefNotFound):
        ref.get()

    short = make.keep_for(1).remote(10)
    assert short.expires_at < time.time() + 2
    time.sleep(1.5)
    with pytest.raises(den.RefExpired, match="expired") as expired:
        short.get()
    assert expired.value.status == 410
    with pytest.raises(den.RefExpired):
        total(short)


def test_using_a_ref_needs_read_on_the_function_that_made_it(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("shared", cleanup_clusters)
    make = den.function(remote_fns.make_array).to(cpu).save()
    den.function(remote_fns.total).to(cpu).save().share("rita")
    cpu.share("rita", access_level="read")
    made = make.remote(10)

    team.login("rita")
    # A ref object uses the session it was made with; rita's copy (as an XCom or a
    # message would bring it) uses hers.
    ref = den.Ref.from_json(made.to_json())
    total = den.function(name="/alice/total")
    with pytest.raises(den.RefNotFound, match="may call the function that made it") as refused:
        total(ref)
    assert refused.value.status == 404
    with pytest.raises(den.RefNotFound):
        ref.get()
    with pytest.raises(den.RefNotFound):
        ref.delete()

    team.login("alice")
    make.share("rita")
    time.sleep(AUTH_CACHE_SECONDS + 0.3)  # the daemon remembered rita's refusal that long
    team.login("rita")
    assert total(ref) == 45.0  # a reader's arguments are plain data, and this ref
    assert ref.get() == array.array("d", range(10))
    with pytest.raises(den.PermissionDenied, match="owner"):
        ref.delete()  # rita may use it; only alice (or the cluster's writers) free it
    mine = den.function(name="/alice/make_array").remote(3)
    assert mine.owner == "rita"
    mine.delete()

    team.login("sam")  # may not read anything of alice's
    with pytest.raises(den.NotFound):
        den.Ref.from_json(made.to_json()).get()


def test_a_ref_on_another_cluster_is_refused_clearly(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("cpu", cleanup_clusters)
    gpu = up_cluster("gpu", cleanup_clusters)
    ref = den.function(remote_fns.make_array).to(cpu).remote(5)
    elsewhere = den.function(remote_fns.total).to(gpu)
    with pytest.raises(den.RefElsewhere, match=r"kept on /alice/cpu.*ref\.get\(\)"):
        elsewhere(ref)
    assert elsewhere(ref.get()) == 10.0
