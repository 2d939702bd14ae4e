"""What every AWS client of a container shares."""

import functools
import threading

import botocore.session

_creating = threading.Lock()


@functools.cache
def session() -> botocore.session.Session:
    """The one botocore session of a container, shared by the S3 client and every pynamodb model's
    client: service models, endpoint rules and credentials are loaded once, not once per client.

    A botocore session is not thread-safe, and pynamodb creates a model's client in whichever thread
    calls first (8 threads reserving ids at once): clients are created one at a time. Once created,
    clients are thread-safe."""
    shared = botocore.session.get_session()
    create_client = shared.create_client

    @functools.wraps(create_client)
    def one_at_a_time(*args, **kwargs):
        with _creating:
            return create_client(*args, **kwargs)

    shared.create_client = one_at_a_time
    return shared
