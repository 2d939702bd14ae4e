"""Content-addressed uploads over HTTP on the running local stack: its verifying S3 front refuses bytes
that are not the declared SHA-256 (400 BadDigest), as S3 does, and accepts the right ones."""

import hashlib
import time
import xml.etree.ElementTree as ET

from tests import sample_images


def prepare(stack, dataset: int, data: bytes, name: str = "car.jpg") -> dict:
    files = [{"filename": name, "file_size": len(data), "mime_type": "image/jpeg", "sha256": sha(data)}]
    reply = stack.http.post(stack.url(f"/datasets/{dataset}/images/prepare-upload"), json={"files": files})
    assert reply.status_code == 200, reply.text
    return reply.json()["uploads"][0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(stack, image_id: int, status: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = stack.http.get(stack.url(f"/images/{image_id}")).json()
        if image["status"] == status or time.monotonic() > deadline:
            return image
        time.sleep(0.1)


def test_the_local_s3_refuses_other_bytes_than_the_declared_hash_and_takes_the_right_ones(stack):
    dataset = stack.dataset()
    good = sample_images.jpeg_of_size(3000, tag=dataset)
    wrong = sample_images.jpeg_of_size(3000, tag=dataset + 1)  # same size and type, other bytes
    ticket = prepare(stack, dataset, good)

    refused = stack.http.put(ticket["upload_url"], data=wrong, headers=ticket["upload_headers"])
    assert refused.status_code == 400
    assert ET.fromstring(refused.content).findtext("Code") == "BadDigest"  # noqa: S314 - our local endpoint
    # The checksum is a signed header: leaving it out breaks the signature.
    unsigned = stack.http.put(ticket["upload_url"], data=good, headers={"Content-Type": "image/jpeg"})
    assert unsigned.status_code == 403

    assert (
        stack.http.put(ticket["upload_url"], data=good, headers=ticket["upload_headers"]).status_code == 200
    )
    image = wait_for(stack, ticket["image_id"], "uploaded")
    assert (image["status"], image["sha256"]) == ("uploaded", sha(good))

    again = prepare(stack, dataset, good, name="renamed.jpg")
    assert (again["duplicate_of"], again["upload_url"]) == (ticket["image_id"], None)
    reply = stack.http.post(stack.url(f"/datasets/{dataset}/images/lookup"), json={"sha256": [sha(good)]})
    assert reply.json()["found"][0]["image_id"] == ticket["image_id"]
    stack.check_invariants([dataset], kept_uploaded=[ticket["image_id"]])
