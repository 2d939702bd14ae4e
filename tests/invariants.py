"""The data-safety invariants, checked over the whole bucket (every version) and the whole table.

Called at the end of every concurrency test, once every event has been delivered:
- no delete markers: nothing is ever deleted by key only (that would keep the bytes as a noncurrent
  version, and hide a version nobody judged);
- every upload version belongs to a live `uploaded` image and is the verified version its record
  names, and the current one of its key; every thumbnail is the one of an `uploaded` image;
- every `uploaded` record has its verified version and its thumbnail, and no error reason;
- nothing that was `uploaded` was lost (`kept_uploaded`);
- every `uploaded` record has a sha256, and no dataset holds two `uploaded` images with the same one;
  with the hashes table: each of them is named by its (dataset, sha256) claim, and every claim names a
  live image of its dataset with that hash (`uploaded` for an uploaded claim, `error` for a rejected one).
"""

from collections import defaultdict


def table_items(dynamodb, table: str) -> list[dict]:
    items, kwargs = [], {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return [i for i in items if int(i["id"]["N"]) != 0]  # 0: the id counter
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def bucket_versions(s3, bucket: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """Key -> its versions (newest first), and the delete markers."""
    versions: dict[str, list[dict]] = defaultdict(list)
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            versions[version["Key"]].append(version)
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def check(
    s3, bucket: str, dynamodb, table: str, kept_uploaded=(), datasets=None, hashes_table: str | None = None
) -> list[dict]:
    """Asserts the invariants; returns the table's records (as DynamoDB items) for further checks.

    `datasets`: only these datasets' records and objects (other tests share a running stack).
    """
    items = table_items(dynamodb, table)
    versions, markers = bucket_versions(s3, bucket)
    if datasets is not None:
        prefixes = tuple(f"{kind}/{d}/" for d in datasets for kind in ("datasets", "thumbnails"))
        items = [i for i in items if int(i["dataset_id"]["N"]) in datasets]
        versions = {k: v for k, v in versions.items() if k.startswith(prefixes)}
        markers = [m for m in markers if m["Key"].startswith(prefixes)]
    assert markers == [], f"delete markers left: {markers}"

    by_key = {i["s3_key"]["S"]: i for i in items}
    uploaded = {int(i["id"]["N"]): i for i in items if i["status"]["S"] == "uploaded"}
    thumbnails = {i["thumbnail_key"]["S"] for i in uploaded.values()}
    for key, key_versions in versions.items():
        if key.startswith("thumbnails/"):
            assert key in thumbnails, f"thumbnail {key} belongs to no uploaded image"
            assert len(key_versions) == 1, f"thumbnail {key} has {len(key_versions)} versions"
            continue
        record = by_key.get(key)
        assert record is not None, f"{key} has no record ({len(key_versions)} versions left)"
        assert record["status"]["S"] == "uploaded", (
            f"{key}: versions left beside a '{record['status']['S']}' record"
        )
        ids = [v["VersionId"] for v in key_versions]
        assert ids == [record["object_version"]["S"]], (
            f"{key}: versions {ids}, verified {record['object_version']}"
        )
        assert key_versions[0]["IsLatest"]

    for image_id, record in uploaded.items():
        assert "error_reason" not in record or record["error_reason"].get("NULL"), (
            f"{image_id}: error beside uploaded"
        )
        assert record["s3_key"]["S"] in versions, f"image {image_id} is uploaded but its bytes are gone"
        assert record["thumbnail_key"]["S"] in versions, f"image {image_id} lost its thumbnail"
    for image_id in kept_uploaded:
        assert image_id in uploaded, f"image {image_id} was uploaded and is not any more"
    _check_hashes(dynamodb, items, uploaded, hashes_table, datasets)
    return items


def _check_hashes(dynamodb, items: list[dict], uploaded: dict, hashes_table: str | None, datasets) -> None:
    holders: dict[tuple[int, str], int] = {}
    for image_id, record in uploaded.items():
        assert "sha256" in record, f"image {image_id} is uploaded without its sha256"
        key = (int(record["dataset_id"]["N"]), record["sha256"]["S"])
        assert key not in holders, f"images {holders[key]} and {image_id} are uploaded with the same bytes"
        holders[key] = image_id
    if hashes_table is None:
        return
    claims = {(int(c["dataset_id"]["N"]), c["sha256"]["S"]): c for c in _all(dynamodb, hashes_table)}
    if datasets is not None:
        claims = {k: c for k, c in claims.items() if k[0] in datasets}
    by_id = {int(i["id"]["N"]): i for i in items}
    for key, image_id in holders.items():
        claim = claims.get(key)
        assert claim is not None, f"{key}: uploaded image {image_id} has no claim"
        assert int(claim["image_id"]["N"]) == image_id, f"{key}: uploaded image {image_id}, claim {claim}"
        assert claim["state"]["S"] == "uploaded", f"{key}: uploaded image {image_id}, claim {claim}"
    for key, claim in claims.items():
        record = by_id.get(int(claim["image_id"]["N"]))
        assert record is not None, f"claim {key} names image {claim['image_id']}, which is gone"
        assert (int(record["dataset_id"]["N"]), record.get("sha256", {}).get("S")) == key, (key, record)
        expected = {"uploaded": "uploaded", "rejected": "error"}.get(claim["state"]["S"])
        assert expected in (None, record["status"]["S"]), f"claim {key} {claim['state']}, record {record}"


def _all(dynamodb, table: str) -> list[dict]:
    items, kwargs = [], {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
