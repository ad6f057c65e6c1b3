"""What ``ssehub serve`` runs with, as one value: `ServeConfig`, built once from the flags.

The command line (`ssehub.server.cli`) parses the flags into a `ServeConfig`; the runners
(`ssehub.server.runners`) build the hub and serve it from that value alone; and the
``--workers N`` supervisor (`ssehub.server.supervisor`) hands the very same value to each
worker as JSON (`ServeConfig.to_json`, `ServeConfig.from_json`), so no flag can differ between
the workers and the command line that started them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "ADMIN_TOKEN_ENV",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "ENV_PREFIX",
    "JWT_SECRET_ENV",
    "PUBLISH_TOKEN_ENV",
    "SUBSCRIBE_TOKEN_ENV",
    "CLIError",
    "ServeConfig",
    "env_var",
]

ENV_PREFIX = "SSEHUB_"
"""The prefix of the environment variable of every ``ssehub serve`` flag (`env_var`)."""


def env_var(name: str) -> str:
    """The environment variable of the ``ssehub serve`` option ``name``.

    ``name`` is a `ServeConfig` field (the flag's ``dest``, ``cors_origin``) or the flag itself
    (``--cors-origin``); both give ``SSEHUB_CORS_ORIGIN``. This is the only place the names are
    made, so a new flag has its variable without further work.
    """
    return ENV_PREFIX + name.lstrip("-").replace("-", "_").upper()


PUBLISH_TOKEN_ENV = env_var("publish_token")
"""The environment variable read for ``--publish-token`` (keeps it out of the process list)."""

SUBSCRIBE_TOKEN_ENV = env_var("subscribe_token")
"""The environment variable read for ``--subscribe-token``."""

ADMIN_TOKEN_ENV = env_var("admin_token")
"""The environment variable read for ``--admin-token``."""

JWT_SECRET_ENV = env_var("jwt_secret")
"""The environment variable read for ``--jwt-secret``."""


DEFAULT_HEAD_TIMEOUT = 10.0
"""Seconds a client has to send a request head (``--head-timeout``)."""
DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a request body once its head is in (``--body-timeout``)."""
DEFAULT_IDLE_TIMEOUT = 5.0
"""Seconds an idle keep-alive connection stays open (``--idle-timeout``)."""


class CLIError(Exception):
    """A bad combination of options or a missing optional dependency (exit status 2)."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every option of ``ssehub serve``: one field per flag, named after the flag's ``dest``.

    The parser (``ssehub serve --help``) documents each flag and holds the defaults; build a
    config with `from_args`. Tokens and the JWT secret are fields like the others: they travel
    to workers through a pipe, never on a command line. ``jwt_public_key`` holds the key itself
    (PEM), read from its file when the flags were parsed.
    """

    host: str
    port: int
    workers: int
    http: str
    cors_origin: tuple[str, ...]
    allowed_host: tuple[str, ...]
    history: int
    history_ttl: float | None
    history_bytes: int
    history_memory: int
    retry: int | None
    keepalive: float
    max_body: int
    max_batch: int
    max_buffer: int
    max_clients: int | None
    head_timeout: float
    body_timeout: float
    idle_timeout: float
    redis: str | None
    redis_key_ttl: float
    data: str | None
    fsync: str
    publish_token: str | None
    subscribe_token: str | None
    admin_token: str | None
    jwt_secret: str | None
    jwt_public_key: str | None
    require_subscriber_token: bool
    mercure: str
    public_metrics: bool
    metrics_channels: int
    log_level: str
    access_log: bool
    presence: bool
    stream_rate: float

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, ignore: frozenset[str] = frozenset()
    ) -> ServeConfig:
        """The config of parsed ``ssehub serve`` arguments.

        Every destination in ``args`` but those in ``ignore`` must be a field (TypeError
        otherwise): a flag added to the parser and not here fails at once, not in a worker.
        """
        given = vars(args)
        names = {f.name for f in fields(cls)}
        unknown = given.keys() - names - ignore
        if unknown:
            raise TypeError(f"ssehub serve options missing from ServeConfig: {sorted(unknown)}")
        return cls.from_dict({name: given[name] for name in names})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ServeConfig:
        """The config of a dict of every field (as `to_dict` makes it); ValueError if not one."""
        names = {f.name for f in fields(cls)}
        if values.keys() != names:
            missing, extra = sorted(names - values.keys()), sorted(values.keys() - names)
            raise ValueError(f"not a ServeConfig: missing {missing}, unknown {extra}")
        return cls(
            **{
                **values,
                "cors_origin": tuple(values["cors_origin"]),
                "allowed_host": tuple(values["allowed_host"]),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict of every field (the inverse of `from_dict`)."""
        return asdict(self)

    def to_json(self) -> str:
        """The config as a JSON object (the inverse of `from_json`)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> ServeConfig:
        """The config `to_json` wrote (ValueError if ``text`` is not one)."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("a ServeConfig is a JSON object")
        return cls.from_dict(values)

    @classmethod
    def env_vars(cls) -> tuple[str, ...]:
        """The environment variable of every option (`env_var` of each field)."""
        return tuple(env_var(f.name) for f in fields(cls))

    def with_port(self, port: int) -> ServeConfig:
        """The same config on another port (a worker's, once the supervisor resolved port 0)."""
        return replace(self, port=port)
