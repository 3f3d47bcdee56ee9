"""den: save, share and call Python functions and classes on remote compute.

This module is the public client API. Importing it never imports Django,
Celery or SkyPilot (the client talks to a den server over HTTP), and httpx,
YAML and :mod:`inspect` are imported only when first needed.

    import den
    den.login(url="http://127.0.0.1:8000", token="den_...")
    cpu = den.cluster(name="cpu", provider="local").up_if_not()
    train = den.function(train).to(cpu)
    train(data)                                 # runs on the cluster
    train.save()                                # -> /alice/train
    train.share("bob@example.com")
    fn = den.load("http://127.0.0.1:8000/alice/train")   # as bob
"""

__version__ = "0.1.0"

from den.client.account import (
    acreate_token,
    alogin,
    awhoami,
    create_token,
    list_tokens,
    login,
    logout,
    revoke_token,
    whoami,
)
from den.client.errors import (
    AuthenticationError,
    BadRequest,
    CallTimeout,
    ClusterStopping,
    Conflict,
    DaemonUnreachable,
    DenError,
    EnvSetupFailed,
    InvalidAddress,
    NetworkError,
    NoRunningCluster,
    NotFound,
    NotLoggedIn,
    ObjectNotFound,
    PermissionDenied,
    PickleRefused,
    RefElsewhere,
    RefExpired,
    RefGone,
    RefNotFound,
    RemoteError,
    ServerError,
    Throttled,
    ValidationError,
    WorkerCrashed,
    WrongType,
)
from den.client.refs import Ref
from den.client.resources import (
    Cluster,
    Env,
    Function,
    Module,
    Resource,
    Secret,
    aload,
    cluster,
    env,
    function,
    load,
    module,
    resource,
    secret,
)
from den.client.resources import alist_resources as alist
from den.client.resources import list_resources as list
from den.client.session import Session

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "CallTimeout",
    "Cluster",
    "ClusterStopping",
    "Conflict",
    "DaemonUnreachable",
    "DenError",
    "Env",
    "EnvSetupFailed",
    "Function",
    "InvalidAddress",
    "Module",
    "NetworkError",
    "NoRunningCluster",
    "NotFound",
    "NotLoggedIn",
    "ObjectNotFound",
    "PermissionDenied",
    "PickleRefused",
    "Ref",
    "RefElsewhere",
    "RefExpired",
    "RefGone",
    "RefNotFound",
    "RemoteError",
    "Resource",
    "Secret",
    "ServerError",
    "Session",
    "Throttled",
    "ValidationError",
    "WorkerCrashed",
    "WrongType",
    "__version__",
    "acreate_token",
    "alist",
    "aload",
    "alogin",
    "awhoami",
    "cluster",
    "create_token",
    "env",
    "function",
    "list",
    "list_tokens",
    "load",
    "login",
    "logout",
    "module",
    "resource",
    "revoke_token",
    "secret",
    "whoami",
]
