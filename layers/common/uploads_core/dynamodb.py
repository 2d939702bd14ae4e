"""What every pynamodb model of this project shares: its table name and its timeouts come from the
settings, read when pynamodb first opens its connection (the first call), never at import."""

from collections.abc import Callable
from functools import lru_cache

import pynamodb.connection.base
from pynamodb.connection import Connection

from uploads_core import aws
from uploads_core.settings import Settings, get_settings

# pynamodb takes no session argument: each Connection calls this module's get_session.
pynamodb.connection.base.get_session = aws.session


class _FromSettings:
    def __init__(self, read: Callable[[Settings], object]) -> None:
        self._read = read

    def __get__(self, instance, owner) -> object:
        return self._read(get_settings())


def meta(table_name: Callable[[Settings], str]) -> type:
    """A pynamodb Meta class for the table the settings name."""

    class Meta:
        # None: botocore takes the region from the environment, as Lambda sets it.
        region = None

    Meta.table_name = _FromSettings(table_name)
    return Meta


def with_timeouts(meta_class: type) -> None:
    """Call once the models using `meta_class` exist: pynamodb probes Meta with hasattr while it builds
    a model class (which would read the settings at import), and reads these again at connection."""
    meta_class.connect_timeout_seconds = _FromSettings(lambda s: s.aws_connect_timeout)
    meta_class.read_timeout_seconds = _FromSettings(lambda s: s.aws_read_timeout)
    meta_class.max_retry_attempts = _FromSettings(lambda s: s.aws_max_attempts - 1)  # after the first
    # confirm-upload's concurrent writes each need a connection of their own.
    meta_class.max_pool_connections = _FromSettings(lambda s: s.head_concurrency)


def connection() -> Connection:
    """For transactions, which take a connection rather than a model's: one per container (a new one
    would build a botocore session and parse DynamoDB's service model again, ~0.1 s, per transaction)."""
    settings = get_settings()
    return _connection(
        settings.region,
        settings.aws_endpoint_url,
        settings.aws_connect_timeout,
        settings.aws_read_timeout,
        settings.aws_max_attempts,
    )


@lru_cache(maxsize=4)
def _connection(
    region: str, endpoint: str | None, connect_timeout: float, read_timeout: float, max_attempts: int
) -> Connection:
    return Connection(
        region=region,
        host=endpoint,
        connect_timeout_seconds=connect_timeout,
        read_timeout_seconds=read_timeout,
        max_retry_attempts=max_attempts - 1,
    )
