"""The "Load it" snippets run as shown: a function is called with its
parameters, a saved module instance is used as an instance (never called like
a class), and a saved class is called to make one."""

from __future__ import annotations

import pytest

from frontend.snippets import load_snippets
from tests.factories import ResourceFactory, UserFactory
from tests.frontend.conftest import text_of

pytestmark = pytest.mark.django_db

TRAIN_SIGNATURE = {
    "name": "train", "doc": "Train.", "is_async": False,
    "parameters": [
        {"name": "data", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "list[float]"},
        {"name": "epochs", "kind": "POSITIONAL_OR_KEYWORD", "default": 3},
        {"name": "callback", "kind": "POSITIONAL_OR_KEYWORD", "default_repr": "<function f>"},
        {"name": "options", "kind": "VAR_KEYWORD"},
    ],
}
MODEL_SIGNATURE = {
    "name": "Model", "doc": None,
    "init": {"name": "__init__", "parameters": [{"name": "size", "kind": "POSITIONAL_OR_KEYWORD"}]},
    "methods": {"predict": {"name": "predict", "kind": "method",
                            "parameters": [{"name": "x", "kind": "POSITIONAL_OR_KEYWORD"}]}},
}


@pytest.fixture
def alice():
    return UserFactory(username="alice")


def _python(resource):
    return next(s for s in load_snippets(resource) if s.id == "python").code


def test_a_function_snippet_shows_its_parameters(alice):
    fn = ResourceFactory(owner=alice, name="train", type="function",
                         config={"system": "/alice/cpu", "signature": TRAIN_SIGNATURE})
    code = _python(fn)
    assert 'fn = den.function(name="/alice/train")' in code
    assert "result = fn(data, epochs=3, callback=..., **options)" in code


def test_a_saved_instance_is_used_as_an_instance(alice):
    model = ResourceFactory(owner=alice, name="model", type="module",
                            config={"system": "/alice/cpu", "signature": MODEL_SIGNATURE,
                                    "data": {"instance": True}})
    code = _python(model)
    assert 'm = den.module(name="/alice/model")' in code
    assert "m.predict(x)" in code
    assert "Model(" not in code and "instance = " not in code


def test_a_saved_class_is_called_to_make_an_instance(alice):
    model = ResourceFactory(owner=alice, name="Model", type="module",
                            config={"system": "/alice/cpu", "signature": MODEL_SIGNATURE})
    code = _python(model)
    assert 'Model = den.module(name="/alice/Model")' in code
    assert "m = Model(size)" in code and "m.predict(x)" in code


def test_names_that_are_not_identifiers_stay_out_of_the_snippet(alice):
    fn = ResourceFactory(owner=alice, name="odd", type="function", config={"signature": {
        "parameters": [{"name": "os.system('x')"}, {"name": "ok"}, "junk"]}})
    assert "result = fn(ok)" in _python(fn)


def test_the_page_shows_the_instance_snippet(alice, client):
    ResourceFactory(owner=alice, name="model", type="module",
                    config={"signature": MODEL_SIGNATURE, "data": {"instance": True}})
    client.force_login(alice)
    page = text_of(client.get("/alice/model"))
    assert 'm = den.module(name="/alice/model")' in page and "m.predict(x)" in page
