"""What every pynamodb model of this project shares: its table name and its timeouts come from the
settings, read when pynamodb first opens its connection (the first call), never at import."""

from collections.abc import Callable

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
    """For transactions, which take a connection rather than a model's."""
    settings = get_settings()
    return Connection(
        region=settings.region,
        connect_timeout_seconds=settings.aws_connect_timeout,
        read_timeout_seconds=settings.aws_read_timeout,
        max_retry_attempts=settings.aws_max_attempts - 1,
    )
