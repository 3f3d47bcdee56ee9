"""Resource objects without a server: config round trips, captured code, stubs."""

import copy
import inspect
import json

import pytest

import den
from den.client.resources import Resource

from . import sample_code


def _roundtrip(resource: Resource) -> None:
    config = resource.config()
    json.dumps(config)  # JSON-ready
    snapshot = copy.deepcopy(config)
    again = type(resource).from_config(config)
    assert type(again) is type(resource)
    assert again.config() == snapshot
    assert config == snapshot, "from_config must not change its input"
    generic = Resource.from_config(config)
    assert type(generic) is type(resource)
    assert generic.config() == snapshot


def _resources():
    cpu = den.cluster(name="cpu", provider="local", autostop_mins=30)
    sk = den.env(reqs=["scikit-learn"], name="sk", env_vars={"A": "1"}, python="3.11")
    return [
        cpu,
        den.cluster(
            name="/alice/box",
            ips=["10.0.0.5"],
            ssh_user="ubuntu",
            ssh_port=2222,
            creds="/alice/box-key",
            den_auth=True,
            server_port=32300,
        ),
        den.cluster(name="gpu", instance_type="A10G:1", provider="aws", use_spot=True, num_nodes=2),
        den.cluster(name="weird", provider="local", custom_field={"x": [1, 2]}),
        sk,
        den.env(setup_cmds=["apt-get install -y git"]),
        den.secret(name="aws", provider="aws", region="us-east-1"),
        den.resource(name="~/settings", data={"lr": 0.1, "layers": [64, 32], "name": "x"}),
        den.function(sample_code.train),
        den.function(sample_code.train, name="/alice/train").to(cpu, env=sk),
        den.function(sample_code.train).to("/alice/cpu", env=["numpy"]),
        den.function(sample_code.predict_async, name="folder/predict", description="d"),
        den.module(sample_code.Model).to(cpu, env=sk),
        den.module(sample_code.Model, name="/alice/model", visibility="unlisted"),
    ]


@pytest.mark.parametrize("resource", _resources(), ids=repr)
def test_config_round_trip(resource):
    _roundtrip(resource)


def test_round_trip_of_a_server_answer():
    answer = {
        "address": "/alice/train",
        "type": "function",
        "owner": "alice",
        "visibility": "private",
        "description": "",
        "version": 4,
        "config": {
            "system": "/alice/cpu",
            "env": {"reqs": ["numpy"]},
            "pointers": {"module": "m", "qualname": "f", "path": "m.py"},
            "signature": {"name": "f", "doc": None, "parameters": []},
            "extra": 1,
        },
        "access_level": "read",
        "url": "http://den.test/alice/train",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    fn = den.Resource.from_config(answer)
    assert isinstance(fn, den.Function)
    assert fn.address == "/alice/train"
    assert fn.name == "train"
    assert fn.version == 4
    assert fn.owner == "alice"
    assert fn.access_level == "read"
    assert fn.system == "/alice/cpu"
    assert isinstance(fn.env, den.Env) and fn.env.reqs == ["numpy"]
    assert fn.data == {"extra": 1}
    assert fn.config()["config"] == answer["config"]
    _roundtrip(fn)


def test_from_config_checks_the_type():
    config = den.env(reqs=["x"], name="/alice/e").config()
    with pytest.raises(den.WrongType) as info:
        den.Function.from_config(config)
    assert isinstance(info.value, TypeError)
    assert isinstance(den.Resource.from_config(config), den.Env)


def test_function_captures_pointers_and_signature():
    fn = den.function(sample_code.train)
    assert fn.name == "train"
    assert fn.address is None
    assert fn.pointers == {
        "module": "tests.client.sample_code",
        "qualname": "train",
        "path": "tests/client/sample_code.py",
    }
    sig = fn.config()["config"]["signature"]
    assert sig["name"] == "train"
    assert sig["doc"] == "Train a tiny model and return its loss."
    params = {p["name"]: p for p in sig["parameters"]}
    assert params["data"] == {
        "name": "data",
        "kind": "POSITIONAL_OR_KEYWORD",
        "annotation": "list[float]",
    }
    assert params["epochs"]["default"] == 3
    assert params["lr"]["kind"] == "KEYWORD_ONLY"
    assert params["seed"]["default_repr"].startswith("<object object")
    assert sig["return_annotation"] == "float"
    assert not sig["is_async"]
    assert den.function(sample_code.predict_async).signature_data["is_async"]


def test_local_function_runs_locally_without_a_cluster():
    fn = den.function(sample_code.train)
    assert fn([1.0, 2.0], epochs=1, lr=1.0) == 3.0


def test_loaded_function_knows_its_signature_and_has_no_cluster():
    stub = den.Function.from_config(den.function(sample_code.train, name="/alice/train").config())
    assert stub.fn is None
    assert list(stub.signature.parameters) == ["data", "epochs", "lr", "seed"]
    assert inspect.signature(stub) == stub.signature
    assert str(stub.signature).startswith("(data: list[float], epochs: int = 3, *, lr: float = 0.1")
    assert stub.__doc__ == "Train a tiny model and return its loss."
    with pytest.raises(TypeError):
        stub()  # missing "data"
    with pytest.raises(den.NoRunningCluster, match="no running cluster"):
        stub([1.0])


def test_function_on_a_cluster_is_not_run_locally():
    fn = den.function(sample_code.train).to(den.cluster(name="cpu", provider="local"))
    with pytest.raises(den.NoRunningCluster) as info:
        fn([1.0])
    assert "cpu" in str(info.value)
    assert isinstance(info.value, den.DenError)


def test_to_records_system_and_env():
    cpu = den.cluster(name="cpu", provider="local")
    fn = den.function(sample_code.train).to(cpu, env=["numpy", "pandas"])
    config = fn.config()["config"]
    assert config["system"] == "cpu"
    assert config["env"] == {"reqs": ["numpy", "pandas"]}
    assert fn.system is cpu
    fn.to("/bob/gpu", env="~/sk")
    config = fn.config()["config"]
    assert config["system"] == "/bob/gpu"
    assert config["env"] == "~/sk"


def test_module_captures_class_and_methods():
    mod = den.module(sample_code.Model)
    assert mod.name == "Model"
    assert mod.pointers["qualname"] == "Model"
    sig = mod.signature_data
    assert sig["doc"] == "A toy model."
    assert [p["name"] for p in sig["init"]["parameters"]] == ["size", "name"]
    assert set(sig["methods"]) == {"predict", "load", "version"}
    assert sig["methods"]["predict"]["kind"] == "method"
    assert [p["name"] for p in sig["methods"]["predict"]["parameters"]] == ["x"]
    assert sig["methods"]["load"]["kind"] == "classmethod"
    assert [p["name"] for p in sig["methods"]["load"]["parameters"]] == ["path"]
    assert sig["methods"]["version"]["kind"] == "staticmethod"
    assert str(mod.methods["predict"]) == "(x: float) -> float"
    local = mod(3)
    assert isinstance(local, sample_code.Model) and local.predict(2) == 6

    stub = den.Module.from_config(mod.config())
    assert str(stub.signature) == "(size: int, name: str = 'm')"
    with pytest.raises(den.NoRunningCluster):
        stub(3)


def test_cluster_with_inline_ssh_creds(tmp_path):
    key = tmp_path / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    box = den.cluster(
        name="box", ips=["10.0.0.5"], ssh_creds={"ssh_user": "ubuntu", "ssh_private_key": str(key)}
    )
    assert box.provider == "ssh"
    assert box.ssh_user == "ubuntu"
    assert isinstance(box.creds, den.Secret)
    assert box.creds._values["private_key"].startswith("-----BEGIN")
    # The secret's values never appear in a config.
    assert "BEGIN" not in json.dumps(box.config())


def test_secret_values_stay_out_of_config():
    secret = den.secret(name="aws", provider="aws", values={"key": "s3cr3t"})
    assert "s3cr3t" not in json.dumps(secret.config())
    assert secret.values == {"key": "s3cr3t"}


def test_names():
    fn = den.function(sample_code.train, name="~/folder/train")
    assert fn.name == "folder/train"
    assert fn.address is None
    assert fn.config()["name"] == "~/folder/train"
    fn.name = "/bob/train"
    assert fn.address == "/bob/train"
    with pytest.raises(den.InvalidAddress):
        den.function(sample_code.train, name="/bob/bad name")


def test_bad_arguments():
    with pytest.raises(den.ValidationError):
        den.function()
    with pytest.raises(den.ValidationError, match="visibility"):
        den.env(reqs=["x"], visibility="secret")
    with pytest.raises(den.ValidationError, match="no name"):
        den.env(reqs=["x"]).save()


def test_saving_without_a_server_says_how_to_log_in():
    with pytest.raises(den.NotLoggedIn, match="den login"):
        den.env(reqs=["x"], name="/alice/sk").save()
