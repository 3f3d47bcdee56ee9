"""``import den`` stays light: no Django, Celery, SkyPilot, and nothing heavy until used."""

import json
import subprocess
import sys

HEAVY = ("django", "celery", "rest_framework", "sky", "kombu", "redis", "psycopg2")
LAZY = ("httpx", "yaml", "cloudpickle", "inspect", "dataclasses", "asyncio")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "DEN_CONFIG": "/nonexistent/den.yaml"},
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _top(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_import_den_does_not_import_server_packages():
    top = _top(_modules_after("import den"))
    assert not top & set(HEAVY), top & set(HEAVY)


def test_import_den_defers_heavy_libraries():
    top = _top(_modules_after("import den"))
    assert not top & set(LAZY), top & set(LAZY)


def test_cli_module_stays_light():
    top = _top(_modules_after("import den.cli"))
    assert not top & set(HEAVY)
    assert "httpx" not in top


def test_public_api_is_there():
    import den

    for name in den.__all__:
        assert hasattr(den, name), name
        obj = getattr(den, name)
        if callable(obj) and name != "__version__":
            assert obj.__doc__, f"den.{name} has no docstring"
