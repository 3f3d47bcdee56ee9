"""Den's and the node daemon's errors are one hierarchy: what a caller catches is a den error."""

import pickle

import den
from den.node import errors as node_errors


def test_every_daemon_error_is_a_den_error_of_the_kind_a_caller_catches():
    cases = {
        "forbidden": den.PermissionDenied,
        "unauthorized": den.AuthenticationError,
        "not_found": den.NotFound,
        "pickle_refused": den.BadRequest,
        "too_large": den.ValidationError,
        "timeout": den.CallTimeout,
        "cluster_stopping": den.NoRunningCluster,
        "env_failed": den.EnvSetupFailed,
        "den_unavailable": den.ServerError,
        "worker_crashed": den.WorkerCrashed,
        "something_new": den.DenError,
    }
    for code, cls in cases.items():
        exc = node_errors.error_from_payload({"code": code, "message": "it failed"}, 403)
        assert isinstance(exc, cls), (code, type(exc))
        assert exc.status == 403 and exc.code == code
    unauthorized = node_errors.error_from_payload({"code": "unauthorized", "message": "bad"}, 401)
    assert "den login" in str(unauthorized)
    assert issubclass(node_errors.NodeUnreachable, den.NetworkError)
    assert issubclass(node_errors.NodeUnreachable, ConnectionError)
    assert node_errors.NodeError is den.DenError


def test_a_den_error_keeps_its_attributes_through_pickle():
    exc = den.WorkerCrashed("the worker died", env="sk", exit_code=-9, status=500)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is den.WorkerCrashed
    assert (back.message, back.env, back.exit_code, back.status, back.code) == (
        "the worker died", "sk", -9, 500, "worker_crashed")


def test_context_names_what_failed_once():
    exc = den.ObjectNotFound("no object named x")
    exc.with_context("Function /alice/train").with_context("Function /alice/train")
    assert str(exc) == "Function /alice/train: no object named x."
    remote = den.RemoteError("boom", remote_type="ValueError")
    assert str(remote.with_context("Function /alice/train")) == "ValueError: boom"


def test_remote_execution_does_not_reach_into_resource_objects():
    # It gets a plain Target from functions and modules; it never imports their classes.
    import ast
    from pathlib import Path

    from den.client import remote

    tree = ast.parse(Path(remote.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and name.startswith("den.client.resources") for name in imported)
