"""Functions and modules: code that runs on a cluster, saved by reference.

Remote execution (:mod:`den.client.remote`) never reaches into these objects: a
runnable describes itself as a plain :class:`~den.client.remote.Target`
(:meth:`Runnable._target`), remote execution records on it what it put on a
daemon, and the runnable takes that back (:meth:`Runnable._take`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from den.client import api
from den.client.errors import ValidationError, WrongType
from den.client.resources.base import Resource, from_fields, prune
from den.client.resources.clusters import Cluster
from den.client.resources.envs import Env, as_env
from den.client.session import Op, Session

if TYPE_CHECKING:
    import inspect
    from typing import Self  # novm: Python 3.11; the node imports this module on 3.9 too

    from den.client import remote
    from den.client.refs import Ref


class _Targeted:
    """``with runnable._target() as target``: hands the target out, and back to the
    runnable on the way out (also when the operation raised)."""

    __slots__ = ("owner", "target")

    def __init__(self, owner: Runnable, target: remote.Target) -> None:
        self.owner = owner
        self.target = target

    def __enter__(self) -> remote.Target:
        return self.target

    def __exit__(self, *exc: object) -> None:
        self.owner._take(self.target)


class Runnable(Resource):
    """What functions and modules share: code ``pointers``, a ``signature``, the
    ``system`` (cluster) to run on and the ``env`` to run in."""

    def __init__(
        self,
        name: str | None = None,
        *,
        system: Cluster | str | None = None,
        env: Env | str | list[str] | dict[str, Any] | None = None,
        pointers: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
        code: str | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.system: Cluster | str | None = system
        self.env: Env | str | None = as_env(env)
        self.pointers = pointers
        self.signature_data = signature
        self.code = code
        # What this process put on a cluster's daemon (see den.client.remote).
        self._deployment: remote.Deployment | None = None
        # A module instance's constructor arguments, when made in this process.
        self._init_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    @property
    def system_address(self) -> str | None:
        """The address (or name, if not yet saved) of the cluster this runs on."""
        if isinstance(self.system, Cluster):
            return self.system.address or self.system._name
        return self.system

    def _config_fields(self) -> dict[str, Any]:
        system: Any = self.system
        if isinstance(system, Cluster):
            system = system.address or system._name or system._config_fields()
        env: Any = self.env
        if isinstance(env, Env):
            env = env.address or env._name or env._config_fields()
        fields = {
            "system": system,
            "env": env,
            "code": self.code,
            "pointers": self.pointers,
            "signature": self.signature_data,
        }
        return {**self.data, **prune(fields)}

    def _set_fields(self, config: dict[str, Any]) -> None:
        system = config.pop("system", None)
        self.system = from_fields(Cluster, system) if isinstance(system, dict) else system
        env = config.pop("env", None)
        self.env = as_env(env)
        self.code = config.pop("code", None)
        self.pointers = config.pop("pointers", None)
        self.signature_data = config.pop("signature", None)
        self.data = config

    def _wire_config(self, session: Session) -> Op[dict[str, Any]]:
        config = self._config_fields()
        if isinstance(self.system, Cluster):
            if self.system.address is None and self.system._name is None:
                raise ValidationError(
                    f"The cluster of this {self.TYPE} has no name; name it "
                    "(den.cluster(name='cpu', ...)) so it can be saved and shared.",
                    field="system",
                )
            config["system"] = yield from self.system._ensure_saved(session)
        elif isinstance(self.system, str):
            config["system"] = yield from api.resolve(session, self.system)
        if isinstance(self.env, Env):
            if self.env.address is None and self.env._name is None:
                config["env"] = self.env._config_fields()  # unnamed: stored inline
            else:
                config["env"] = yield from self.env._ensure_saved(session)
        elif isinstance(self.env, str):
            config["env"] = yield from api.resolve(session, self.env)
        return config

    def _save_op(self, session: Session, name: str | None = None, force: bool = False) -> Op[Self]:
        yield from super()._save_op(session, name, force)
        if self._deployment is not None:
            from den.client import remote

            with self._target() as target:
                remote.redeploy_after_save(target)
        return self

    # -- what remote execution sees ------------------------------------------------

    def _label(self) -> str:
        return f"{self.TYPE.capitalize()} {self.address or self.name or '(unnamed)'}"

    def _target(self) -> _Targeted:
        """This function or module as remote execution sees it: a plain value, handed
        back (``with self._target() as target``) so what was sent is taken back even
        when the operation fails."""
        from den.client import remote

        system = self.system
        cluster: remote.ClusterRef | None = None
        if isinstance(system, Cluster):
            cluster = remote.ClusterRef(system.address or system._name,
                                        saved=system.version is not None, is_object=True)
        elif system is not None:
            cluster = remote.ClusterRef(system)
        env = self.env
        env_name: str | None = None
        env_config: dict[str, Any] | None = None
        if isinstance(env, Env):
            env_name, env_config = env.address or env._name, env._config_fields()
        elif env is not None:
            env_name = env
        target = remote.Target(
            kind=self.TYPE,
            label=self._label(),
            session=self._sess(),
            address=self.address,
            name=self._name,
            saved=self.version is not None,
            cluster=cluster,
            env_name=env_name,
            env_config=env_config,
            obj=self._local_object(),
            pointers=dict(self.pointers or {}),
            code=self.code,
            pickle_allow=self.data.get("pickle_allow") or None,
            instance=bool(self.data.get("instance")),
            init_args=self._init_args,
            deployment=self._deployment,
            node=self.data.get("node") or None,
        )
        return _Targeted(self, target)

    def _take(self, target: remote.Target) -> None:
        """Take back what remote execution sent for this object."""
        self._deployment = target.deployment
        if target.code:
            self.code = target.code

    def _local_object(self) -> Any:
        return None

    def _call(self, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
              keep: float | None = None) -> Any:
        from den.client import remote

        with self._target() as target:
            return remote.call(target, method, args, kwargs, keep=keep)

    def to(
        self,
        system: Cluster | str | None,
        env: Env | str | list[str] | dict[str, Any] | None = None,
        *,
        node: int | None = None,
    ) -> Self:
        """Send this function or class to a cluster (a :class:`Cluster` or its address)
        to run there, optionally in an env (an :class:`Env`, its address, or a list of
        pip requirements). Returns ``self``, whose calls now run on the cluster.

        When den reports the cluster up, its code goes at once: the project
        directory of its module, bundled (``.gitignore`` respected) and uploaded
        once per content; a function defined in ``__main__`` or a notebook goes by
        value. Otherwise it goes at the first call. Saving records the cluster and
        env, so teammates can call it by name. ``node`` places it on another
        host of a cluster with several (``node=1``; 0, the head, by default).
        """
        self.system = system
        if env is not None:
            self.env = as_env(env)
        if node:
            if isinstance(node, bool) or not isinstance(node, int) or node < 0:
                raise ValidationError("node must be a node's number (0 is the head).",
                                      field="node")
            self.data["node"] = node
        else:
            self.data.pop("node", None)
        self._send_to_system()
        return self

    def _send_to_system(self) -> None:
        """Send code and env to the cluster now, if it is up (see :mod:`den.client.remote`)."""
        from den.client import remote

        self._deployment = None
        with self._target() as target:
            remote.deploy(target)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_deployment"] = None  # daemon handles belong to this process
        return state


class Function(Runnable):
    """A Python function saved by reference: where its code is (``pointers``), how it
    is called (``signature``), where it runs (``system``) and in what (``env``).

    Calling a function that wraps a local callable and has no cluster runs it
    locally; otherwise the call goes to its cluster.
    """

    TYPE = "function"

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if fn is not None:
            from den.client import introspect

            kwargs.setdefault("pointers", introspect.pointers_for(fn))
            kwargs.setdefault("signature", introspect.function_signature(fn))
            if name is None:
                name = getattr(fn, "__name__", None)
                if name == "<lambda>":
                    name = None
        super().__init__(name, **kwargs)
        self.fn = fn
        if self.signature_data and self.signature_data.get("doc"):
            self.__doc__ = self.signature_data["doc"]

    def _local_object(self) -> Any:
        return self.fn

    def _set_fields(self, config: dict[str, Any]) -> None:
        super()._set_fields(config)
        self.__doc__ = (self.signature_data or {}).get("doc") or type(self).__doc__

    @property
    def signature(self) -> inspect.Signature:
        """The function's :class:`inspect.Signature`, rebuilt from the stored one."""
        from den.client import introspect

        return introspect.signature_from_json(self.signature_data)

    @property
    def __signature__(self) -> inspect.Signature:
        return self.signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function: locally if it wraps a local callable and has no cluster,
        else on its cluster. Arguments are checked against the signature first."""
        if self.fn is not None and self.system is None:
            return self.fn(*args, **kwargs)
        if self.signature_data:
            self.signature.bind(*args, **kwargs)
        return self._call(None, args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (see :meth:`__call__`) without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.__call__, *args, **kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Ref:
        """Call the function on its cluster, keeping the result there: returns a
        :class:`den.Ref` (a few hundred bytes) instead of the result. Pass the ref to
        functions on the same cluster, which get the object itself; ``ref.get()``
        fetches it. It is kept for a day; :meth:`keep_for` chooses."""
        return self.keep_for(REF_SECONDS).remote(*args, **kwargs)

    def keep_for(self, seconds: float) -> Keeping:
        """``fn.keep_for(3600).remote(x)``: :meth:`remote`, kept that many seconds."""
        return Keeping(self, None, seconds)


class Module(Runnable):
    """A Python class saved by reference: its ``pointers``, and in ``signature`` its
    name, doc, ``__init__`` and public method signatures. Calling the module makes
    an instance (locally without a cluster, on the cluster otherwise)."""

    TYPE = "module"

    def __init__(self, cls: type | None = None, name: str | None = None, **kwargs: Any) -> None:
        if cls is not None:
            from den.client import introspect

            kwargs.setdefault("pointers", introspect.pointers_for(cls))
            kwargs.setdefault("signature", introspect.class_signature(cls))
            if name is None:
                name = cls.__name__
        super().__init__(name, **kwargs)
        self.cls = cls

    def _local_object(self) -> Any:
        return self.__dict__.get("cls")

    @property
    def methods(self) -> dict[str, inspect.Signature]:
        """The public methods and their signatures."""
        from den.client import introspect

        methods = (self.signature_data or {}).get("methods") or {}
        return {name: introspect.signature_from_json(sig) for name, sig in methods.items()}

    @property
    def signature(self) -> inspect.Signature:
        """The signature of the class's constructor."""
        from den.client import introspect

        init = (self.signature_data or {}).get("init")
        if init is None and self.signature_data is not None:
            import inspect as _inspect

            return _inspect.Signature([])
        return introspect.signature_from_json(init)

    @property
    def is_instance(self) -> bool:
        """True for a remote instance (made by calling a module on a cluster)."""
        return bool(self.__dict__.get("data", {}).get("instance"))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Make an instance: locally if this wraps a local class and has no cluster,
        else on the cluster, returning a remote instance whose methods run there.

        ``name="..."`` (when the constructor takes no ``name``) names the remote
        instance and saves it, so it can be shared and loaded by name with its
        state. Calling a remote instance calls its ``__call__`` method.
        """
        if self.is_instance:
            return self._call("__call__", args, kwargs)
        if self.cls is not None and self.system is None:
            return self.cls(*args, **kwargs)
        name: str | None = None
        if "name" in kwargs and "name" not in self._init_parameters():
            name = str(kwargs.pop("name"))
        if self.signature_data:
            self.signature.bind(*args, **kwargs)
        return self._instantiate(args, kwargs, name=name)

    def _instantiate(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                     name: str | None = None) -> Module:
        """Make a remote instance of this class on its cluster: a :class:`Module`
        whose methods are remote calls. A named instance is saved first, so
        teammates it is shared with can call it."""
        import uuid

        from den.client import remote

        with self._target() as target:
            url = remote.running_daemon(target)
        instance = Module(
            None,
            name or f"{self.name or 'module'}-{uuid.uuid4().hex[:8]}",
            system=self.system,
            env=self.env,
            pointers=self.pointers,
            signature=self.signature_data,
            code=self.code,
            data={**self.data, "instance": True},
            session=self._session,
        )
        instance.cls = self.cls
        instance._init_args = (tuple(args), dict(kwargs))
        if name is not None:
            instance.save()
        with instance._target() as target:
            remote.put(target, url)
        return instance

    def _init_parameters(self) -> set[str]:
        init = (self.signature_data or {}).get("init") or {}
        return {str(param.get("name")) for param in init.get("parameters") or []}

    def method(self, name: str) -> MethodHandle:
        """A handle on a method of this remote instance (for names that attributes of
        the resource itself hide, such as ``version`` or ``save``)."""
        if not self.is_instance:
            raise WrongType(
                f"{self!r} is a class; make an instance on its cluster first "
                "(instance = module(...)) and call its methods.",
            )
        return MethodHandle(self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the object does not have: remote methods.
        if name.startswith("_") or not self.is_instance:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        methods = (self.__dict__.get("signature_data") or {}).get("methods")
        if methods and name not in methods:
            raise AttributeError(
                f"{self!r} has no method {name!r}; its methods: {', '.join(sorted(methods))}"
            )
        return self.method(name)


class MethodHandle:
    """A method of a remote module instance: calling it runs the method on the cluster."""

    def __init__(self, instance: Module, name: str) -> None:
        self.instance = instance
        self.name = name
        methods = (instance.signature_data or {}).get("methods") or {}
        doc = (methods.get(name) or {}).get("doc")
        if doc:
            self.__doc__ = doc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.instance._call(self.name, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Ref:
        """Call the method, keeping the result on the cluster as a :class:`den.Ref`."""
        return Keeping(self.instance, self.name, REF_SECONDS).remote(*args, **kwargs)

    def keep_for(self, seconds: float) -> Keeping:
        """``m.predict.keep_for(3600).remote(x)``: :meth:`remote`, kept that many seconds."""
        return Keeping(self.instance, self.name, seconds)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.instance._call, self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self.name} of {self.instance!r}>"


#: How long ``.remote(...)`` keeps a result on the cluster by default (a day).
REF_SECONDS = 86400.0


class Keeping:
    """A call whose result stays on the cluster (``fn.keep_for(seconds).remote(...)``)."""

    def __init__(self, runnable: Runnable, method: str | None, seconds: float) -> None:
        if not seconds > 0:
            raise ValidationError("keep_for needs a number of seconds above 0.", field="seconds")
        self.runnable = runnable
        self.method = method
        self.seconds = float(seconds)

    def remote(self, *args: Any, **kwargs: Any) -> Ref:
        """Run the call on the cluster; return a :class:`den.Ref` to its result."""
        runnable = self.runnable
        if runnable.system is None:
            from den.client.errors import NoRunningCluster

            raise NoRunningCluster(
                f"{runnable._label()} has no cluster: .remote() keeps results on a cluster; "
                "send it to one with .to(cluster) first."
            )
        if self.method is None and runnable.signature_data and isinstance(runnable, Function):
            runnable.signature.bind(*args, **kwargs)
        result: Ref = runnable._call(self.method, args, kwargs, keep=self.seconds)
        return result
