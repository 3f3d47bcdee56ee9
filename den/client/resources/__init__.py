"""Resource objects: clusters, functions, modules, envs, secrets and plain JSON resources.

A resource object holds a config (the JSON signature den stores) and, once saved
or loaded, its ``address`` and ``version``. One module per concept:

- :mod:`~den.client.resources.base`: :class:`Resource` (names, config, save, share,
  versions, delete), the base of the others and the type of plain JSON resources;
- :mod:`~den.client.resources.envs`, :mod:`~den.client.resources.secrets`,
  :mod:`~den.client.resources.clusters`: :class:`Env`, :class:`Secret`, :class:`Cluster`;
- :mod:`~den.client.resources.runnables`: :class:`Function` and :class:`Module`, which
  hand remote execution (:mod:`den.client.remote`) a plain
  :class:`~den.client.remote.Target` and take back what it sent;
- :mod:`~den.client.resources.loading`: :func:`load` and :func:`list_resources`;
- :mod:`~den.client.resources.factories`: ``den.function(...)``, ``den.cluster(...)``, ...
"""

from den.client.resources.base import Resource
from den.client.resources.clusters import Cluster
from den.client.resources.envs import Env
from den.client.resources.factories import cluster, env, function, module, resource, secret
from den.client.resources.loading import alist_resources, aload, list_resources, load
from den.client.resources.runnables import Function, MethodHandle, Module, Runnable
from den.client.resources.secrets import Secret

__all__ = [
    "Cluster",
    "Env",
    "Function",
    "MethodHandle",
    "Module",
    "Resource",
    "Runnable",
    "Secret",
    "alist_resources",
    "aload",
    "cluster",
    "env",
    "function",
    "list_resources",
    "load",
    "module",
    "resource",
    "secret",
]
