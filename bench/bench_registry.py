#!/usr/bin/env python
"""Registry benchmark: throughput and latency of den's hot read paths.

    .venv/bin/python bench/bench_registry.py            # about 2 minutes
    .venv/bin/python bench/bench_registry.py --profile  # also: queries per request, EXPLAIN ANALYZE

In one run, against PostgreSQL and gunicorn (sync workers, as in production),
with ``wrk`` as the load generator, it measures requests per second and p50/p99
latency for

    healthz  GET /healthz                                  the stack's ceiling (plain Django view)
    (a)      GET /api/v1/resources/<address>               token auth
    (b)      GET /api/v1/auth/check?address=...&level=read what node daemons ask
    (c)      GET /api/v1/resources?q=...                   search, 100,000 resources, 1,000 users

and prints (a), (b), (c) beside and as ratios to healthz, with PASS/MISS
against the goals: (a) and (b) at least 0.5x healthz throughput, (b) p50 at
most 2 ms, (c) p99 at most 50 ms.

It starts its own PostgreSQL 15 (``PG_BIN``, default /usr/lib/postgresql/15/bin)
on a free loopback port in a temporary directory, unless ``DATABASE_URL`` is
set (then that database is used as it is: it must be a scratch database; the
bench adds its users and resources, once, and reuses them on later runs). It
stops everything it started on exit, Ctrl-C or its time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SEED_MARK = "BENCH_SEED_JSON "
PROFILE_MARK = "BENCH_PROFILE_JSON "

# Goals from the issue.
GOAL_THROUGHPUT_RATIO = 0.5
GOAL_CHECK_P50_MS = 2.0
GOAL_SEARCH_P99_MS = 50.0

# Search terms for (c), a mix of selectivities: two common ones (about 5% of
# resources match), one in between (about 2%) and two rare ones (0.1 to 0.2%,
# a colleague's name and a two-word phrase), each by name or description.
SEARCH_TERMS = ("llama", "imagenet", "whisper-large", "quantize gemma", "sybil")


def log(message: str) -> None:
    print(f"== {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Data: generated deterministically, loaded with COPY (run inside Django).
# ---------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words(
    "alice bob carol dave erin frank grace heidi ivan judy mallory nina olivia peggy "
    "rupert sybil trent victor walter xena yusuf zoe amir bea chen dmitri elena fatima "
    "goran hana ines jonas kai lena mateo noor oskar priya quinn rosa sami tariq uma "
    "vera wen ximena yara zain"
)
MODELS = _words(
    "resnet50 resnet18 bert-base roberta distilbert gpt2 llama-7b llama-13b mistral-7b "
    "t5-small t5-large vit-b16 clip whisper-small whisper-large stable-diffusion xgboost "
    "lightgbm yolov8 unet efficientnet mobilenet deberta electra sam dinov2 wav2vec2 "
    "falcon-7b phi-2 gemma-2b mixtral"
)
TASKS = _words(
    "train finetune eval preprocess tokenize embed serve infer export distill quantize "
    "benchmark sweep augment featurize score label deploy"
)
DATASETS = _words(
    "imagenet coco squad glue c4 wikitext librispeech openwebtext laion mnist cifar10 "
    "criteo movielens commoncrawl pile"
)
PROJECTS = _words(
    "nlp vision speech recsys ranking search ads fraud forecasting research platform infra"
)
FRAMEWORKS = _words("pytorch jax tensorflow sklearn huggingface deepspeed ray")
GPUS = _words("a100 h100 t4 l4 v100 a10g cpu")
PROVIDERS = _words("aws gcp kubernetes ssh local azure")
SECRET_KINDS = _words("aws hf wandb s3 gcp-sa github slack postgres")
EXTRAS = (
    "Runs nightly from Airflow.",
    "Used by the {project} team.",
    "Mixed precision with gradient checkpointing.",
    "Writes checkpoints to the shared bucket.",
    "Experimental; do not use in production.",
    "Maintained by {user}.",
    "Copied from the {project} template.",
    "",
    "",
)
TYPE_WEIGHTS = {"function": 40, "module": 15, "cluster": 10, "env": 15, "secret": 5, "resource": 15}
VISIBILITY_WEIGHTS = {"private": 65, "unlisted": 10, "public": 25}


def _usernames(n: int) -> list[str]:
    k = len(FIRST_NAMES)
    return [f"{FIRST_NAMES[i % k]}{i // k + 1}" for i in range(n)]


def _make_resource(rng: random.Random, user: str, kind: str) -> tuple[str, str, dict]:
    """(name, description, config) for one resource of ``kind``."""
    model, task, dataset = rng.choice(MODELS), rng.choice(TASKS), rng.choice(DATASETS)
    project, framework = rng.choice(PROJECTS), rng.choice(FRAMEWORKS)
    extra = rng.choice(EXTRAS).format(project=project, user=user)
    code = f"{rng.getrandbits(128):032x}"
    if kind in ("function", "module"):
        name = f"{task}-{model}" if rng.random() < 0.6 else f"{project}/{task}-{model}-{dataset}"
        description = f"{task.capitalize()} {model} on {dataset} with {framework}. {extra}"
        config: dict[str, Any] = {
            "system": f"/{user}/{rng.choice(GPUS)}-cluster",
            "env": f"/{user}/{framework}-env",
            "code": code,
            "pointers": [f"{project}/{task}.py", f"{project}.{task}", task.replace("-", "_")],
            "signature": {"parameters": ["dataset", "epochs", "lr"], "doc": description},
        }
        if kind == "module":
            name += "-module"
            config["methods"] = {"forward": ["x"], "fit": ["data", "epochs"]}
    elif kind == "cluster":
        gpu = rng.choice(GPUS)
        name = f"{gpu}-{rng.choice(['dev', 'pool', 'x8', 'small', 'train', 'serve'])}"
        description = f"{gpu.upper()} cluster for {project} {task} jobs. {extra}"
        config = {
            "provider": rng.choice(PROVIDERS),
            "instance_type": f"{gpu}:{rng.choice([1, 2, 4, 8])}",
            "num_nodes": rng.choice([1, 1, 2, 4]),
            "autostop_mins": rng.choice([-1, 30, 60]),
            "server_port": 32300,
            "den_auth": True,
        }
    elif kind == "env":
        name = f"{framework}-{rng.choice(['base', 'gpu', 'cu121', 'cpu', 'dev'])}"
        description = f"{framework} environment for {project} ({model} and friends). {extra}"
        config = {
            "reqs": [framework, "numpy", "pandas", f"{model}-utils"],
            "env_vars": {"PROJECT": project},
            "setup_cmds": [],
            "python": rng.choice(["3.10", "3.11", "3.12"]),
        }
    elif kind == "secret":
        provider = rng.choice(SECRET_KINDS)
        name = f"{provider}-{rng.choice(['prod', 'dev', 'readonly', 'ci', 'token'])}"
        description = f"{provider} credentials for {project}. {extra}"
        config = {"provider": provider}
    else:
        name = f"{dataset}-{rng.choice(['split', 'eval-set', 'manifest', 'stats', 'sample'])}"
        description = f"{dataset} {rng.choice(['train', 'eval'])} data for {model} {task}. {extra}"
        config = {"uri": f"s3://{project}-data/{dataset}/{code[:8]}", "rows": rng.randint(1, 10**7)}
    return name, description.strip(), config


def _copy(cursor: Any, table: str, columns: list[str], rows: list[tuple]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerows(rows)
    buf.seek(0)
    raw = getattr(cursor, "cursor", cursor)  # Django's wrapper -> DB-API cursor
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
    if hasattr(raw, "copy_expert"):  # psycopg2
        raw.copy_expert(sql, buf)
    else:  # psycopg 3
        with raw.copy(sql) as copy:
            copy.write(buf.getvalue())


def django_seed(n_users: int, n_resources: int, n_token_users: int, seed: int) -> dict:
    """Seed (unless already seeded), make tokens, and return the request lists."""
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from registry import services
    from registry.models import AccessGrant, Resource, ResourceVersion, User

    rng = random.Random(seed)
    usernames = _usernames(n_users)
    started = time.monotonic()
    reused = User.objects.filter(username=usernames[0]).exists()
    if not reused:
        now = timezone.now()
        unusable = make_password(None)
        with transaction.atomic():
            User.objects.bulk_create(
                [User(username=u, email=f"{u}@example.com", password=unusable) for u in usernames],
                batch_size=1000,
            )
            ids = dict(User.objects.filter(username__in=usernames).values_list("username", "id"))
            per_user = n_resources // n_users
            kinds, kind_w = zip(*TYPE_WEIGHTS.items(), strict=True)
            vis, vis_w = zip(*VISIBILITY_WEIGHTS.items(), strict=True)
            year = 365 * 86400
            rows = []
            for u in usernames:
                seen: set[str] = set()
                for kind in rng.choices(kinds, kind_w, k=per_user):
                    name, description, config = _make_resource(rng, u, kind)
                    base, k = name, 2
                    while name in seen:
                        name, k = f"{base}-v{k}", k + 1
                    seen.add(name)
                    created = now - timedelta(seconds=rng.uniform(0, year))
                    updated = created + (now - created) * rng.random() ** 3
                    version = 1 if rng.random() < 0.7 else rng.randint(2, 6)
                    rows.append(
                        (
                            ids[u],
                            name,
                            kind,
                            rng.choices(vis, vis_w)[0],
                            description,
                            json.dumps(config),
                            version,
                            created.isoformat(),
                            updated.isoformat(),
                        )
                    )
            with connection.cursor() as cursor:
                _copy(
                    cursor,
                    "registry_resource",
                    [
                        "owner_id",
                        "name",
                        "type",
                        "visibility",
                        "description",
                        "config",
                        "version",
                        "created_at",
                        "updated_at",
                    ],
                    rows,
                )
                # Every resource has its versions 1..version (the last one is its config).
                cursor.execute(
                    """
                    INSERT INTO registry_resourceversion
                        (resource_id, number, type, config, author_id, restored_from, created_at)
                    SELECT r.id, g.n, r.type, r.config, r.owner_id, NULL,
                           r.created_at + (r.updated_at - r.created_at)
                                          * ((g.n - 1)::float / GREATEST(r.version - 1, 1))
                    FROM registry_resource r
                    CROSS JOIN LATERAL generate_series(1, r.version) AS g(n)
                    WHERE r.owner_id = ANY(%s)
                    """,
                    [list(ids.values())],
                )
                # About 20 grants per user, on others' private and unlisted resources.
                cursor.execute(
                    "SELECT id, owner_id FROM registry_resource "
                    "WHERE owner_id = ANY(%s) AND visibility <> 'public'",
                    [list(ids.values())],
                )
                shareable = cursor.fetchall()
                grants = []
                for uid in ids.values():
                    picked = {r for r in rng.sample(shareable, 24) if r[1] != uid}
                    for rid, owner_id in list(picked)[:20]:
                        level = 1 if rng.random() < 0.7 else 2
                        grants.append((rid, uid, level, owner_id, now.isoformat()))
                _copy(
                    cursor,
                    "registry_accessgrant",
                    ["resource_id", "user_id", "level", "granted_by_id", "created_at"],
                    grants,
                )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    seed_seconds = time.monotonic() - started

    # Tokens, through the service (as users get them), for every n-th user, and
    # the addresses each reads: 4 of their own, 3 public and 1 unlisted of
    # others', 2 shared with them.
    step = max(1, n_users // n_token_users)
    token_users = list(User.objects.filter(username__in=usernames[::step][:n_token_users]))
    others: dict[str, list[tuple[int, str]]] = {"public": [], "unlisted": []}
    for owner_id, vis, owner, name in (
        Resource.objects.filter(visibility__in=list(others))
        .order_by("id")
        .values_list("owner_id", "visibility", "owner__username", "name")
    ):
        others[vis].append((owner_id, f"/{owner}/{name}"))
    detail, check, search = [], [], []
    for user in token_users:
        _, plain = services.token_create(user=user, name="bench", scope="read", expires_in_days=1)
        own = list(
            Resource.objects.filter(owner=user).order_by("id").values_list("name", flat=True)
        )
        public = [a for o, a in rng.sample(others["public"], 4) if o != user.pk][:3]
        unlisted = [a for o, a in rng.sample(others["unlisted"], 2) if o != user.pk][:1]
        shared = [
            f"/{owner}/{name}"
            for owner, name in AccessGrant.objects.filter(user=user)
            .order_by("id")
            .values_list("resource__owner__username", "resource__name")
        ]
        addresses = [f"/{user.username}/{n}" for n in rng.sample(own, 4)]
        addresses += public + unlisted + rng.sample(shared, 2)
        for address in addresses:
            detail.append((plain, f"/api/v1/resources{address}"))
            query = urllib.parse.urlencode({"address": address, "level": "read"})
            check.append((plain, f"/api/v1/auth/check?{query}"))
        for term in SEARCH_TERMS:
            search.append((plain, f"/api/v1/resources?{urllib.parse.urlencode({'q': term})}"))
    rng.shuffle(detail)
    rng.shuffle(check)

    # How selective the search terms are: overall, and within one user's listable set.
    from django.db.models import Q

    from registry.access import Caller, restrict_listable

    probe = token_users[0]
    listable = restrict_listable(Resource.objects.all(), Caller(user=probe))
    terms = {}
    for term in SEARCH_TERMS:
        match = Q(name__icontains=term) | Q(description__icontains=term)
        terms[term] = {
            "all": Resource.objects.filter(match).count(),
            "listable": listable.filter(match).count(),
        }
    return {
        "reused": reused,
        "seed_seconds": round(seed_seconds, 1),
        "users": User.objects.count(),
        "resources": Resource.objects.count(),
        "versions": ResourceVersion.objects.count(),
        "grants": AccessGrant.objects.count(),
        "public": Resource.objects.filter(visibility="public").count(),
        "probe_user": probe.username,
        "probe_own": Resource.objects.filter(owner=probe).count(),
        "probe_shared": AccessGrant.objects.filter(user=probe).count(),
        "probe_listable": listable.count(),
        "terms": terms,
        "requests": {"healthz": [["", "/healthz"]], "a": detail, "b": check, "c": search},
    }


def django_profile(requests: dict[str, list[list[str]]], repeat: int) -> dict:
    """In-process (Django test client, no HTTP, no gunicorn), per endpoint: the
    queries of one request, queries per request over the first 50 request
    specs, wall and CPU time per request; and EXPLAIN ANALYZE of the search
    query for each search term."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")

    def get(spec: list[str]) -> Any:
        token, path = spec
        return client.get(path, **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}))

    out: dict[str, Any] = {}
    for key, specs in requests.items():
        status = get(specs[0]).status_code  # warm
        with CaptureQueriesContext(connection) as ctx:
            get(specs[0])
        queries = [q["sql"] for q in ctx.captured_queries]
        sample = specs[:50]
        with CaptureQueriesContext(connection) as ctx:
            for spec in sample:
                get(spec)
        per_request_queries = len(ctx.captured_queries) / len(sample)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(repeat):
            get(specs[i % len(specs)])
        out[key] = {
            "path": specs[0][1],
            "status": status,
            "queries": queries,
            "queries_per_request": per_request_queries,
            "ms": (time.perf_counter() - wall) / repeat * 1000,
            "cpu_ms": (time.process_time() - cpu) / repeat * 1000,
        }
    explains = []
    first_token = requests["c"][0][0]
    for spec in [s for s in requests["c"] if s[0] == first_token]:
        with CaptureQueriesContext(connection) as ctx:
            get(spec)
        sql = next(q["sql"] for q in ctx.captured_queries if "LIKE" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
        execution = next(float(x.split()[-2]) for x in plan if x.startswith("Execution Time"))
        scan = next((x.strip() for x in plan if " on registry_resource" in x), "?")
        removed = next((x.strip() for x in plan if "Rows Removed by Filter" in x), "")
        explains.append(
            {
                "path": spec[1],
                "ms": execution,
                "scan": scan,
                "removed": removed,
                "plan": "\n".join(plan),
                "sql": sql,
            }
        )
    out["explains"] = explains
    return out


# ---------------------------------------------------------------------------
# Processes: PostgreSQL, gunicorn, wrk; all cleaned up on the way out.
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


class Postgres:
    """A throwaway PostgreSQL cluster on loopback (as scripts/test starts one)."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "pg"
        self.port = free_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.started = False

    def start(self) -> str:
        if not (PG_BIN / "initdb").exists():
            raise SystemExit(
                f"PostgreSQL binaries not found in {PG_BIN} "
                "(apt-get install postgresql, or set PG_BIN or DATABASE_URL)"
            )
        self.dir.mkdir()
        if self.as_pg:
            shutil.chown(self.dir, "postgres")
        run(
            [
                *self.as_pg,
                str(PG_BIN / "initdb"),
                "-D",
                str(self.dir),
                "-U",
                "den",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=100 -c shared_buffers=256MB "
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top"
        )
        self.started = True
        run(
            [
                *self.as_pg,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.dir),
                "-l",
                str(self.dir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        run(
            [
                *self.as_pg,
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "den",
                "den",
            ]
        )
        return f"postgres://den@127.0.0.1:{self.port}/den"

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [
                    *self.as_pg,
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.dir),
                    "-m",
                    "immediate",
                    "-t",
                    "20",
                    "stop",
                ],
                capture_output=True,
                timeout=30,
            )
            self.started = False


class Gunicorn:
    def __init__(self, tmp: Path, env: dict[str, str], workers: int, app: str) -> None:
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.app = app
        self.log = tmp / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            self.app,
            "-w",
            str(self.workers),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            "--error-logfile",
            str(self.log),
            "--timeout",
            "60",
        ]  # no --access-logfile: access logging stays off
        env = {k: v for k, v in self.env.items() if k != "GUNICORN_CMD_ARGS"}
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz within 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


WRK_LUA = r"""
-- Requests come from a file of "token<TAB>path" lines, sent round-robin.
local reqs = {}
function init(args)
  for line in io.lines(args[1]) do
    local token, path = line:match("^([^\t]*)\t(.*)$")
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    reqs[#reqs + 1] = wrk.format("GET", path, headers)
  end
  -- threads start at different places in the list
  i = math.random(#reqs)
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, ' ..
    '"max_us": %.0f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# ---------------------------------------------------------------------------
# CPU accounting from /proc, so results can be read per request and noise seen.
# ---------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, own + reaped children's CPU seconds)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            data = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks / CLK_TCK)
    return table


def _tree_cpu(table: dict[int, tuple[int, float]], root: int | None) -> float:
    if root is None or root not in table:
        return 0.0
    return table[root][1] + sum(cpu for ppid, cpu in table.values() if ppid == root)


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Sample:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float = 0.0
    pg_cpu: float = 0.0
    wrk_cpu: float = 0.0
    other_cpu: float = 0.0
    sql_calls: int = 0
    sql_ms: float = 0.0
    top_sql: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        tmp: Path,
        server: Gunicorn,
        pg: Postgres | None,
        database_url: str,
        requests: dict,
    ) -> None:
        self.args = args
        self.server = server
        self.pg = pg
        self.lua = tmp / "bench.lua"
        self.lua.write_text(WRK_LUA)
        self.files = {}
        for key, specs in requests.items():
            path = tmp / f"requests-{key}.tsv"
            path.write_text("".join(f"{t}\t{p}\n" for t, p in specs))
            self.files[key] = path
        self.stats = self._stats_connection(database_url)
        self.pg_pid = pg.pid if pg else self._local_postmaster()

    def _local_postmaster(self) -> int | None:
        """The postmaster's pid when DATABASE_URL's server runs on this machine."""
        if self.stats is None:
            return None
        with self.stats.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        table = _proc_table()
        if backend in table:
            return table[backend][0]
        return None

    @staticmethod
    def _stats_connection(database_url: str) -> Any:
        """A connection to read pg_stat_statements, if the server has it loaded."""
        try:
            import psycopg2

            conn = psycopg2.connect(database_url)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                cur.execute("SELECT pg_stat_statements_reset()")
            return conn
        except Exception as exc:
            log(f"no SQL statement counts (pg_stat_statements unavailable: {exc})")
            return None

    def _sql_reset(self) -> None:
        if self.stats is not None:
            with self.stats.cursor() as cur:
                cur.execute("SELECT pg_stat_statements_reset()")

    def _sql_read(self) -> list[tuple[str, int, float]]:
        if self.stats is None:
            return []
        with self.stats.cursor() as cur:
            cur.execute(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND query NOT ILIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC"
            )
            return [(q, int(c), float(t)) for q, c, t in cur.fetchall()]

    def _server_cpu(self) -> float:
        table = _proc_table()
        gpid = self.server.proc.pid if self.server.proc else None
        return _tree_cpu(table, gpid) + _tree_cpu(table, self.pg_pid)

    def wait_idle(self, limit: float = 10.0) -> None:
        """Let requests still in flight from the last run finish (wrk stops
        sending, the workers do not stop working), so that their CPU and SQL
        are not charged to the next endpoint."""
        deadline = time.monotonic() + limit
        last = self._server_cpu()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self._server_cpu()
            if now - last < 0.01:
                return
            last = now

    def measure(self, key: str, connections: int, seconds: float) -> Sample:
        self.wait_idle()
        cmd = [
            "wrk",
            "-t",
            str(min(self.args.threads, connections)),
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(self.lua),
            self.server.url,
            "--",
            str(self.files[key]),
        ]
        self._sql_reset()
        before = _proc_table()
        busy0 = _machine_busy()
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1 = _machine_busy()
        after = _proc_table()
        line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if result.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        data = json.loads(line[len("WRK_JSON ") :])
        gpid = self.server.proc.pid if self.server.proc else None
        pgpid = self.pg_pid
        server_cpu = _tree_cpu(after, gpid) - _tree_cpu(before, gpid)
        pg_cpu = _tree_cpu(after, pgpid) - _tree_cpu(before, pgpid)
        wrk_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        me = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
        other = (busy1 - busy0) - server_cpu - pg_cpu - wrk_cpu - me
        sql = self._sql_read()
        errors = data["connect"] + data["write"] + data["status"] + data["timeout"]
        # A sync gunicorn worker closes each connection after its response; wrk may
        # count a read error when that races with its next write. Only count read
        # errors when they are more than a trace.
        if data["read"] > 0.001 * data["requests"]:
            errors += data["read"]
        return Sample(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            errors=errors,
            server_cpu=server_cpu,
            pg_cpu=pg_cpu,
            wrk_cpu=wrk_cpu,
            other_cpu=max(other, 0.0),
            sql_calls=sum(c for _, c, _ in sql),
            sql_ms=sum(t for _, _, t in sql),
            top_sql=sql[:4],
        )


def combine(samples: list[Sample]) -> Sample:
    """Rounds of one endpoint: totals for counts, medians for percentiles."""
    total = Sample(
        requests=sum(s.requests for s in samples),
        seconds=sum(s.seconds for s in samples),
        p50_ms=statistics.median(s.p50_ms for s in samples),
        p99_ms=statistics.median(s.p99_ms for s in samples),
        errors=sum(s.errors for s in samples),
        server_cpu=sum(s.server_cpu for s in samples),
        pg_cpu=sum(s.pg_cpu for s in samples),
        wrk_cpu=sum(s.wrk_cpu for s in samples),
        other_cpu=sum(s.other_cpu for s in samples),
        sql_calls=sum(s.sql_calls for s in samples),
        sql_ms=sum(s.sql_ms for s in samples),
    )
    merged: dict[str, list] = {}
    for s in samples:
        for q, c, t in s.top_sql:
            entry = merged.setdefault(q, [q, 0, 0.0])
            entry[1] += c
            entry[2] += t
    total.top_sql = sorted((tuple(v) for v in merged.values()), key=lambda v: -v[2])[:4]
    return total


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

LABELS = {
    "healthz": "healthz          GET /healthz",
    "a": "(a) resource     GET /api/v1/resources/<addr>",
    "b": "(b) auth check   GET /api/v1/auth/check",
    "c": "(c) search       GET /api/v1/resources?q=",
}


def report(
    args: argparse.Namespace,
    seed: dict,
    loaded: dict[str, Sample],
    unloaded: dict[str, Sample],
    have_pg_cpu: bool,
) -> bool:
    base = loaded["healthz"]
    w = 46
    print()
    print(
        f"Loaded: {args.connections} connections (wrk -t{min(args.threads, args.connections)}), "
        f"{args.rounds} x {args.duration:g} s per endpoint, interleaved"
    )
    print(
        f"{'endpoint':<{w}} {'req/s':>8} {'x healthz':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for key, s in loaded.items():
        print(
            f"{LABELS[key]:<{w}} {s.rps:8.0f} {s.rps / base.rps:9.2f} {s.p50_ms:8.2f} "
            f"{s.p99_ms:8.2f} {s.errors:7d}"
        )
    print()
    print(f"Unloaded: 1 connection, {args.unloaded_duration:g} s per endpoint")
    print(
        f"{'endpoint':<{w}} {'req/s':>8} {'x healthz':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    ubase = unloaded["healthz"]
    for key, s in unloaded.items():
        print(
            f"{LABELS[key]:<{w}} {s.rps:8.0f} {s.rps / ubase.rps:9.2f} {s.p50_ms:8.2f} "
            f"{s.p99_ms:8.2f} {s.errors:7d}"
        )
    print()
    print("Cost per request (loaded runs): CPU of the gunicorn workers and of PostgreSQL,")
    print("SQL statements and their execution time (pg_stat_statements)")
    print(
        f"{'endpoint':<{w}} {'app CPU ms':>10} {'x healthz':>9} {'pg CPU ms':>9} "
        f"{'SQL/req':>7} {'SQL ms':>7}"
    )
    for key, s in loaded.items():
        n = max(s.requests, 1)
        app = s.server_cpu / n * 1000
        pg = f"{s.pg_cpu / n * 1000:9.3f}" if have_pg_cpu else f"{'-':>9}"
        sql = (
            f"{s.sql_calls / n:7.2f} {s.sql_ms / n:7.3f}"
            if s.sql_calls or key == "healthz"
            else f"{'-':>7} {'-':>7}"
        )
        print(
            f"{LABELS[key]:<{w}} {app:10.3f} {app / (base.server_cpu / max(base.requests, 1) * 1000):9.2f} "
            f"{pg} {sql}"
        )
    seconds = sum(s.seconds for s in loaded.values())
    wrk = sum(s.wrk_cpu for s in loaded.values()) / seconds
    other = sum(s.other_cpu for s in loaded.values()) / seconds
    print(
        f"Load generator used {wrk:.2f} cores on average; other processes on the machine "
        f"{other:.2f} cores (of {os.cpu_count()})."
    )
    if not have_pg_cpu:
        print("(PostgreSQL's processes were not found on this machine: its CPU is not shown.)")

    # Goals
    a, b, c = loaded["a"], loaded["b"], loaded["c"]
    goals = [
        (
            "(a) throughput >= 0.5 x healthz (loaded)",
            f"{a.rps / base.rps:.2f} x",
            a.rps / base.rps >= GOAL_THROUGHPUT_RATIO,
        ),
        (
            "(b) throughput >= 0.5 x healthz (loaded)",
            f"{b.rps / base.rps:.2f} x",
            b.rps / base.rps >= GOAL_THROUGHPUT_RATIO,
        ),
        (
            "(b) p50 <= 2 ms, unloaded (1 connection)",
            f"{unloaded['b'].p50_ms:.2f} ms",
            unloaded["b"].p50_ms <= GOAL_CHECK_P50_MS,
        ),
        (
            f"(b) p50 <= 2 ms, loaded ({args.connections} connections)",
            f"{b.p50_ms:.2f} ms",
            b.p50_ms <= GOAL_CHECK_P50_MS,
        ),
        (
            f"(c) p99 <= 50 ms, loaded ({args.connections} connections)",
            f"{c.p99_ms:.2f} ms",
            c.p99_ms <= GOAL_SEARCH_P99_MS,
        ),
        (
            "(c) p99 <= 50 ms, unloaded (1 connection)",
            f"{unloaded['c'].p99_ms:.2f} ms",
            unloaded["c"].p99_ms <= GOAL_SEARCH_P99_MS,
        ),
    ]
    print()
    print("Goals")
    for text, value, ok in goals:
        print(f"  {text:<{w}} {value:>10}   {'PASS' if ok else 'MISS'}")
    print(
        f"  (loaded latency includes queueing: {args.connections} clients share "
        f"{args.workers} sync workers, so p50 is about connections / req/s; base p50 "
        f"{base.p50_ms:.2f} ms on healthz)"
    )
    load_errors = sum(s.errors for s in loaded.values()) + sum(s.errors for s in unloaded.values())
    if load_errors:
        print(f"  WARNING: {load_errors} failed or non-2xx responses; figures are suspect.")
    return all(ok for _, _, ok in goals) and not load_errors


def print_profile(profile: dict, loaded: dict[str, Sample]) -> None:
    print()
    print("Profile: in-process (Django test client: middleware, view, ORM, PostgreSQL; no HTTP,")
    print("no gunicorn), then the statements the server ran under load (pg_stat_statements)")
    for key in ("healthz", "a", "b", "c"):
        p = profile[key]
        print(
            f"  {LABELS[key]}: {p['queries_per_request']:.2f} queries per request, "
            f"{p['ms']:.2f} ms wall and {p['cpu_ms']:.2f} ms CPU per request in-process"
        )
        print(f"    queries of GET {p['path']} (status {p['status']}):")
        for q in p["queries"]:
            print(f"      {q[:300]}")
        s = loaded[key]
        n = max(s.requests, 1)
        if s.top_sql:
            print("    under load: calls per request x mean execution time")
            for q, calls, total in s.top_sql:
                text = " ".join(q.split())[:150]
                print(f"      {calls / n:5.2f} x {total / max(calls, 1):7.3f} ms  {text}")
    explains = profile.get("explains") or []
    if explains:
        print()
        print("EXPLAIN ANALYZE of the search query, one user, each term:")
        for e in explains:
            print(f"  {e['ms']:8.2f} ms  {e['path']}")
            print(f"              {e['scan'][:110]}")
            if e["removed"]:
                print(f"              {e['removed']}")
        worst = max(explains, key=lambda e: e["ms"])
        print()
        print(f"The slowest, {worst['path']}:")
        print("  " + worst["sql"])
        print("\n".join("  " + line for line in worst["plan"].splitlines()))


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def django_env(database_url: str, den_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DEN_HOME=str(den_home),
        DEN_SECRET_KEY="bench-secret-key-not-for-production",
        DEN_LOG_LEVEL="WARNING",
        DEN_DEBUG="0",
        DJANGO_SETTINGS_MODULE="den.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    env.pop("REDIS_URL", None)  # locmem cache, like an embedded single machine
    return env


def run_django(mode: str, env: dict[str, str], payload: dict, mark: str, timeout: float) -> dict:
    result = run(
        [sys.executable, str(Path(__file__).resolve()), mode],
        cwd=ROOT,
        env=env,
        input=json.dumps(payload),
        timeout=timeout,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith(mark)), None)
    if line is None:
        raise RuntimeError(
            f"{mode} printed no result:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return json.loads(line[len(mark) :])


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (apt-get install wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
            env=env,
            timeout=300,
        )
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: sudo apt-get install wrk")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--resources", type=int, default=100_000)
    p.add_argument(
        "--token-users", type=int, default=20, help="users whose tokens drive the load (default 20)"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    p.add_argument("--connections", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--duration", type=int, default=5, help="seconds per loaded run (default 5)")
    p.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds over the endpoints (default 2)"
    )
    p.add_argument(
        "--unloaded-duration",
        type=int,
        default=3,
        help="seconds per single-connection run (default 3)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print queries per request, the SQL under load and EXPLAIN ANALYZE",
    )
    p.add_argument(
        "--time-limit",
        type=int,
        default=180,
        help="stop everything after this many seconds (default 180)",
    )
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument(
        "--wsgi",
        default="den.wsgi:application",
        help="the WSGI app gunicorn serves (default den.wsgi:application); another module "
        "on PYTHONPATH can wrap it to measure a prototype without editing den",
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 30 or not 1 <= args.unloaded_duration <= 30:
        p.error("durations are 1 to 30 seconds")
    if not 1 <= args.connections <= 64 or not 1 <= args.rounds <= 5:
        p.error("connections are 1 to 64, rounds 1 to 5")
    return args


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def bounded(seconds: int) -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and the time limit into an exception, so that
    every ``finally`` below runs and stops what was started."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="den-bench."))
    tmp.chmod(0o755)  # the postgres user needs to reach its data directory inside
    pg: Postgres | None = None
    server: Gunicorn | None = None
    try:
        with bounded(args.time_limit):
            ensure_wrk()
            database_url = os.environ.get("DATABASE_URL", "")
            if database_url:
                log("using DATABASE_URL from the environment")
            else:
                pg = Postgres(tmp)
                log(f"starting PostgreSQL on 127.0.0.1:{pg.port} in {pg.dir}")
                database_url = pg.start()
            env = django_env(database_url, tmp / "home")
            log("manage.py migrate")
            run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env=env,
                timeout=180,
            )
            log(f"seeding {args.users:,} users and {args.resources:,} resources")
            seed_started = time.monotonic()
            seed = run_django(
                "--_seed",
                env,
                {
                    "users": args.users,
                    "resources": args.resources,
                    "token_users": args.token_users,
                    "seed": args.seed,
                },
                SEED_MARK,
                timeout=240,
            )
            log(
                ("reused existing data" if seed["reused"] else "seeded")
                + f" in {seed['seed_seconds']} s; tokens and request lists ready after "
                + f"{time.monotonic() - seed_started:.1f} s"
            )
            profile = None
            if args.profile:
                log("profiling in-process (Django test client)")
                profile = run_django(
                    "--_profile", env, {"requests": seed["requests"]}, PROFILE_MARK, timeout=120
                )
            server = Gunicorn(tmp, env, args.workers, args.wsgi)
            log(f"starting gunicorn -w {args.workers} on {server.url}")
            server.start()
            bench = Bench(args, tmp, server, pg, database_url, seed["requests"])
            keys = ["healthz", "a", "b", "c"]
            log("warming up")
            for key in keys:
                bench.measure(key, args.connections, 1)
            samples: dict[str, list[Sample]] = {k: [] for k in keys}
            for r in range(args.rounds):
                for key in keys:
                    log(
                        f"round {r + 1}/{args.rounds}: {key}, {args.connections} connections, "
                        f"{args.duration:g} s"
                    )
                    samples[key].append(bench.measure(key, args.connections, args.duration))
            loaded = {k: combine(v) for k, v in samples.items()}
            unloaded = {}
            for key in keys:
                log(f"unloaded: {key}, 1 connection, {args.unloaded_duration:g} s")
                unloaded[key] = bench.measure(key, 1, args.unloaded_duration)

            print()
            print(
                f"den registry benchmark: gunicorn sync -w {args.workers}, PostgreSQL "
                f"({'own, loopback' if pg else 'DATABASE_URL'}), wrk; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
            )
            print(
                f"data: {seed['users']:,} users, {seed['resources']:,} resources "
                f"({seed['public']:,} public), {seed['versions']:,} versions, "
                f"{seed['grants']:,} grants"
            )
            print(
                f"search (c): {len(seed['requests']['c'])} requests round-robin, "
                f"{args.token_users} users x q in {', '.join(SEARCH_TERMS)}; e.g. "
                f"{seed['probe_user']} owns {seed['probe_own']}, has {seed['probe_shared']} "
                f"shared, may list {seed['probe_listable']:,}; matches (all / listable): "
                + ", ".join(f"{t} {v['all']:,}/{v['listable']:,}" for t, v in seed["terms"].items())
            )
            ok = report(args, seed, loaded, unloaded, have_pg_cpu=bench.pg_pid is not None)
            if profile:
                print_profile(profile, loaded)
            elif not ok:
                print("  Run with --profile for queries per request and EXPLAIN ANALYZE.")
            print(f"\n(total run time {time.monotonic() - started:.0f} s)")
            return 0
    except Interrupted as exc:
        log(f"stopped by {exc}")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in ("--_seed", "--_profile"):
        sys.path.insert(0, str(ROOT))
        payload = json.loads(sys.stdin.read())
        if sys.argv[1] == "--_seed":
            out = django_seed(
                payload["users"], payload["resources"], payload["token_users"], payload["seed"]
            )
            print(SEED_MARK + json.dumps(out))
        else:
            print(PROFILE_MARK + json.dumps(django_profile(payload["requests"], 200)))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
