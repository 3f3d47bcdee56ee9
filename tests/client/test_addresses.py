import pytest

import den
from den.client.addresses import parse_address, split_address, to_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/alice/train", ("alice", "train")),
        ("/alice/folder/train", ("alice", "folder/train")),
        ("/alice/train/", ("alice", "train")),
        ("  /alice/train  ", ("alice", "train")),
        ("/alice/train/-/versions", ("alice", "train")),
        ("/alice/train/-/versions/3", ("alice", "train")),
        ("/a.b_c-d/x.y_z-1", ("a.b_c-d", "x.y_z-1")),
    ],
)
def test_full_addresses(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["~/train", "train", "folder/train", "~/folder/train"],
)
def test_my_namespace(text):
    owner, name = parse_address(text)
    assert owner is None
    assert name == text.removeprefix("~/")
    assert to_address(text, username="bob") == f"/bob/{name}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://den.example.com/alice/train", "/alice/train"),
        ("http://127.0.0.1:8000/alice/train", "/alice/train"),
        ("http://127.0.0.1:8000/alice/folder/train?tab=config#x", "/alice/folder/train"),
        ("http://127.0.0.1:8000/alice/train/-/versions", "/alice/train"),
        ("http://127.0.0.1:8000/api/v1/resources/alice/train", "/alice/train"),
        ("https://den.example.com/alice/train/", "/alice/train"),
    ],
)
def test_urls_strip_the_host(url, expected):
    assert to_address(url, username=None) == expected


def test_url_under_a_server_prefix():
    url = "https://example.com/den/alice/train"
    assert to_address(url, username=None, server_url="https://example.com/den") == "/alice/train"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "/",
        "/alice",
        "/alice/",
        "~",
        "//train",
        "/alice/bad name",
        "/alice/tr@in",
        "/alice/../etc",
        "/alice/./x",
        "/alice/-",
        "/al ice/train",
        "/alice//train",
        "bad name",
        "https://den.example.com/",
        "https://den.example.com/alice",
    ],
)
def test_bad_addresses(text):
    with pytest.raises(den.InvalidAddress) as info:
        to_address(text, username="bob")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, den.ValidationError)
    assert info.value.field == "address"


def test_own_namespace_needs_a_username():
    with pytest.raises(den.NotLoggedIn):
        to_address("~/train", username=None)


def test_split_address():
    assert split_address("/alice/a/b") == ("alice", "a/b")
    with pytest.raises(den.InvalidAddress):
        split_address("train")
