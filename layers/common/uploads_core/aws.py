"""What every AWS client of a container shares."""

import functools

import botocore.session


@functools.cache
def session() -> botocore.session.Session:
    """The one botocore session of a container, shared by the S3 client and every pynamodb model's
    client: service models, endpoint rules and credentials are loaded once, not once per client.
    Clients are created from it in one thread at a time (botocore's client creation is not
    thread-safe): each is created on the first call of its store, before any thread pool."""
    return botocore.session.get_session()
