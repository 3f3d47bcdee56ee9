"""The den command without a server: parsing, output and exit codes."""

import io
import json

import httpx
import pytest

from den import cli


def run_cli(*argv, stdin=None, monkeypatch=None):
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _error(status, code, message):
    return httpx.Response(status, json={"error": {"code": code, "message": message, "field": None}})


RESOURCE = {
    "address": "/alice/train",
    "type": "function",
    "owner": "alice",
    "visibility": "private",
    "description": "",
    "version": 2,
    "config": {"system": "/alice/cpu"},
    "access_level": "owner",
    "url": "http://den.test/alice/train",
    "created_at": "2026-01-01T10:00:00Z",
    "updated_at": "2026-01-02T11:30:00Z",
}


def test_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["share", "/alice/x"],
        ["share", "/alice/x", "bob", "--access", "admin"],
        ["visibility", "/alice/x", "secret"],
        ["restore", "/alice/x", "three"],
        ["token"],
        ["ls", "--type", "banana"],
    ],
)
def test_usage_errors_exit_2(argv):
    code, _, _ = run_cli(*argv)
    assert code == cli.EXIT_USAGE


def test_bad_address_exits_2(mock_session):
    mock_session(lambda request: httpx.Response(200, json={}))
    code, _, err = run_cli("show", "/alice/bad name")
    assert code == 2
    assert "not a valid address" in err


def test_not_logged_in_exits_6():
    code, _, err = run_cli("whoami")
    assert code == cli.EXIT_AUTH
    assert "den login" in err


def test_unreachable_server_exits_7():
    code, _, err = run_cli("--url", "http://127.0.0.1:9", "--token", "den_x", "whoami")
    assert code == cli.EXIT_NETWORK
    assert "http://127.0.0.1:9" in err


@pytest.mark.parametrize(
    ("status", "code_name", "exit_code"),
    [
        (404, "not_found", 3),
        (403, "permission_denied", 4),
        (412, "version_conflict", 5),
        (409, "already_exists", 5),
        (401, "authentication_failed", 6),
        (500, "server_error", 7),
        (400, "invalid", 2),
    ],
)
def test_server_errors_map_to_exit_codes(mock_session, status, code_name, exit_code):
    mock_session(lambda request: _error(status, code_name, "Nope."))
    code, _, err = run_cli("show", "/alice/train")
    assert code == exit_code
    assert err.startswith("den: error: Nope.")


def _server(request):
    path = request.url.path
    if path == "/api/v1/resources":
        return httpx.Response(200, json={"results": [RESOURCE], "next": None})
    if path == "/api/v1/resources/alice/train":
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json=RESOURCE)
    if path == "/api/v1/resources/alice/train/-/versions":
        return httpx.Response(
            200,
            json={
                "results": [
                    {"version": 2, "type": "function", "author": "alice", "created_at": "2026-01-02T11:30:00Z"},
                    {"version": 1, "type": "function", "author": "alice", "created_at": "2026-01-01T10:00:00Z"},
                ],
                "next": None,
            },
        )
    if path == "/api/v1/me":
        return httpx.Response(200, json={"username": "alice", "email": "a@example.com"})
    if path == "/api/v1/tokens":
        return httpx.Response(200, json=[{"id": 5, "name": "laptop", "scope": "write", "hint": "den_ab…"}])
    if path == "/api/v1/tokens/5":
        return httpx.Response(204)
    raise AssertionError(path)


def test_ls_prints_a_table(mock_session):
    session = mock_session(_server)
    code, out, _ = run_cli("ls", "--type", "function", "--owner", "~", "-q", "tra")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ADDRESS", "TYPE", "VISIBILITY", "VERSION", "UPDATED", "DESCRIPTION"]
    assert row.split()[:4] == ["/alice/train", "function", "private", "2"]
    assert "2026-01-02 11:30" in row
    params = session.requests[0].url.params
    assert (params["type"], params["owner"], params["q"]) == ("function", "alice", "tra")


def test_json_output_before_or_after_the_command(mock_session):
    mock_session(_server)
    for argv in (["--json", "ls"], ["ls", "--json"]):
        code, out, _ = run_cli(*argv)
        assert code == 0
        assert json.loads(out)[0]["address"] == "/alice/train"


def test_show(mock_session):
    mock_session(_server)
    code, out, _ = run_cli("show", "http://den.test/alice/train")
    assert code == 0
    assert out.startswith("/alice/train  (function, version 2)")
    assert '"system": "/alice/cpu"' in out
    assert "VERSION" in out
    code, out, _ = run_cli("show", "/alice/train", "--json")
    data = json.loads(out)
    assert data["resource"]["version"] == 2
    assert [v["version"] for v in data["versions"]] == [2, 1]


def test_rm_asks_first(mock_session, monkeypatch):
    session = mock_session(_server)
    code, _, err = run_cli("rm", "/alice/train", stdin="n\n", monkeypatch=monkeypatch)
    assert code == cli.EXIT_ERROR
    assert "nothing was deleted" in err
    assert not [r for r in session.requests if r.method == "DELETE"]
    code, out, _ = run_cli("rm", "/alice/train", stdin="y\n", monkeypatch=monkeypatch)
    assert code == 0
    assert "deleted /alice/train" in out
    code, _, _ = run_cli("rm", "--yes", "/alice/train", stdin="", monkeypatch=monkeypatch)
    assert code == 0
    assert len([r for r in session.requests if r.method == "DELETE"]) == 2


def test_token_revoke_by_name(mock_session):
    session = mock_session(_server)
    code, out, _ = run_cli("token", "revoke", "laptop")
    assert code == 0
    assert session.requests[-1].method == "DELETE"
    assert session.requests[-1].url.path == "/api/v1/tokens/5"
    code, _, err = run_cli("token", "revoke", "nosuch")
    assert code == cli.EXIT_NOT_FOUND


def test_login_needs_a_token_when_not_interactive(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run_cli("login", "--url", "http://den.test")
    assert code == cli.EXIT_USAGE
    assert "--token" in err


def test_exit_codes_are_documented():
    assert set(cli.EXIT_CODES) == {0, 1, 2, 3, 4, 5, 6, 7, 130, 141}
    assert "exit codes" in cli.__doc__.lower()


def test_a_stored_token_is_not_sent_to_another_server(isolated_client):
    from den.client.config import write_config_file

    write_config_file({"url": "http://den.test", "token": "den_stored", "username": "alice"})
    session = cli._session(cli.build_parser().parse_args(["--url", "http://elsewhere", "whoami"]))
    assert session.url == "http://elsewhere"
    assert session.token is None
    session = cli._session(cli.build_parser().parse_args(["whoami", "--url", "http://den.test/"]))
    assert session.token == "den_stored"
