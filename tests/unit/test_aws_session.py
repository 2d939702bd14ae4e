"""One botocore session per container, whose clients are created one at a time."""

import threading
import time

import botocore.session
import pynamodb.connection.base

from uploads_core import aws, dynamodb


def test_pynamodb_and_the_s3_client_share_the_session():
    assert dynamodb.connection  # importing the store module is what points pynamodb at the session
    assert pynamodb.connection.base.get_session is aws.session


def test_clients_of_the_shared_session_are_created_one_at_a_time(monkeypatch):
    running = peak = 0
    lock = threading.Lock()

    def slow_create(self, *args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # a pause point: a second creation would overlap this one
        with lock:
            running -= 1
        return object()

    monkeypatch.setattr(botocore.session.Session, "create_client", slow_create)
    aws.session.cache_clear()
    try:
        shared = aws.session()
        threads = [threading.Thread(target=shared.create_client, args=("dynamodb",)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        aws.session.cache_clear()
    assert peak == 1
