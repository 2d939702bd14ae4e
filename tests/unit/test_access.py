"""AuthMode=jwt: who may touch a dataset, route by route and role by role.

Every refused call is checked to change nothing: the whole table(s) and bucket (every version) are
compared before and after.
"""

import threading

import boto3
import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file

DATASET, OTHER = 7, 8
CALLERS = {"owner": "alice", "editor": "bob", "viewer": "carol", "other": "dave", "stranger": "eve"}


@pytest.fixture
def world(auth, processor, built_once):
    """Dataset 7: alice owns it, bob edits, carol views, with one uploaded image; dave owns dataset 8.

    Built through the API in the module's first test; the later ones get the same store back."""

    def build() -> int:
        alice = auth("alice")
        reply = alice.call("put_dataset", path=f"/datasets/{DATASET}", path_params={"dataset_id": "7"})
        assert reply.status == 201
        for sub, role in (("bob", "editor"), ("carol", "viewer")):
            assert grant(alice, DATASET, sub, role).status == 200
        dave = auth("dave")
        reply = dave.call("put_dataset", path=f"/datasets/{OTHER}", path_params={"dataset_id": "8"})
        assert reply.status == 201
        data = sample_images.jpeg()
        ticket = alice.prepare(DATASET, [jpeg_file("car.jpg", len(data))]).json["uploads"][0]
        processor.deliver(processor.put(ticket["s3_key"], data))
        return ticket["image_id"]

    image = built_once("world", build)
    return {"image": image, "as": {role: auth(sub) for role, sub in CALLERS.items()}}


def grant(api, dataset_id: int, sub: str, role: str):
    params = {"dataset_id": str(dataset_id), "sub": sub}
    return api.call(
        "put_member", path=f"/datasets/{dataset_id}/members/{sub}", path_params=params, body={"role": role}
    )


def revoke(api, dataset_id: int, sub: str):
    params = {"dataset_id": str(dataset_id), "sub": sub}
    return api.call("delete_member", path=f"/datasets/{dataset_id}/members/{sub}", path_params=params)


def snapshot(aws, s3, bucket) -> tuple:
    dynamodb = boto3.client("dynamodb")
    tables = {
        name: dynamodb.scan(TableName=name)["Items"] for name in (aws["ImagesTable"], aws["MembersTable"])
    }
    listing = s3.list_object_versions(Bucket=bucket)
    versions = sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []))
    return tables, versions


D = {"dataset_id": str(DATASET)}
ROUTES = {
    "prepare-upload": lambda api, image: api.prepare(DATASET, [jpeg_file("new.jpg")]),
    "confirm-upload": lambda api, image: api.confirm(DATASET, [image]),
    "lookup": lambda api, image: api.lookup(DATASET, ["0" * 64]),
    "list": lambda api, image: api.list(DATASET),
    "with-urls": lambda api, image: api.list(DATASET, with_urls=True),
    "get-image": lambda api, image: api.image("get_image", image),
    "download-url": lambda api, image: api.image("get_download_url", image),
    "patch-image": lambda api, image: api.image("patch_image", image, body={"width": 5}),
    "delete-image": lambda api, image: api.image("delete_image", image),
    "list-members": lambda api, image: api.call("list_members", path="/datasets/7/members", path_params=D),
    "put-member": lambda api, image: grant(api, DATASET, "frank", "viewer"),
    "delete-member": lambda api, image: revoke(api, DATASET, "carol"),
    "create-dataset": lambda api, image: api.call("put_dataset", path="/datasets/7", path_params=D),
}
VIEW, EDIT, OWN = (
    {"owner": 200, "editor": 200, "viewer": 200, "other": 404, "stranger": 404},
    {"owner": 200, "editor": 200, "viewer": 403, "other": 404, "stranger": 404},
    {"owner": 200, "editor": 403, "viewer": 403, "other": 404, "stranger": 404},
)
EXPECTED = {
    "prepare-upload": EDIT,
    "confirm-upload": EDIT,
    "lookup": VIEW,
    "list": VIEW,
    "with-urls": VIEW,
    "get-image": VIEW,
    "download-url": VIEW,
    "patch-image": EDIT,
    "delete-image": EDIT,
    "list-members": OWN,
    "put-member": OWN,
    "delete-member": OWN,
    # Only its owner learns anything: 200 (theirs already); anyone else 409, members or not.
    "create-dataset": {"owner": 200, "editor": 409, "viewer": 409, "other": 409, "stranger": 409},
}


@pytest.mark.parametrize("role", list(CALLERS))
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_answers_each_role_as_its_rights_say_and_refusals_change_nothing(
    world, aws, s3, bucket, route, role
):
    before = snapshot(aws, s3, bucket)

    reply = ROUTES[route](world["as"][role], world["image"])

    assert reply.status == EXPECTED[route][role], reply.json
    if reply.status >= 400:
        assert snapshot(aws, s3, bucket) == before
    if reply.status == 403:
        needed = "owner" if EXPECTED[route]["editor"] == 403 else "editor"
        assert f"needs the {needed} role" in reply.json["detail"]
    if reply.status == 404 and route not in ("get-image", "download-url", "patch-image", "delete-image"):
        assert reply.json == {"detail": f"Dataset {DATASET} not found"}


def test_an_image_of_a_dataset_one_is_not_in_looks_exactly_like_a_missing_one(world):
    stranger = world["as"]["stranger"]
    for event in ("get_image", "get_download_url", "delete_image"):
        theirs, missing = stranger.image(event, world["image"]), stranger.image(event, 99_999)
        assert (theirs.status, theirs.json) == (404, {"detail": f"Image {world['image']} not found"})
        assert missing.status == 404


def test_a_dataset_that_does_not_exist_looks_like_one_you_are_not_in(world, auth):
    theirs, missing = auth("eve").list(DATASET), auth("eve").list(999)
    assert (theirs.status, theirs.json) == (404, {"detail": f"Dataset {DATASET} not found"})
    assert (missing.status, missing.json) == (404, {"detail": "Dataset 999 not found"})


def test_each_caller_lists_their_own_datasets_and_roles(world, auth):
    mine = lambda sub: sorted(  # noqa: E731
        (d["dataset_id"], d["role"]) for d in auth(sub).call("list_datasets").json
    )
    assert mine("alice") == [(DATASET, "owner")]
    assert mine("bob") == [(DATASET, "editor")]
    assert mine("dave") == [(OTHER, "owner")]
    assert mine("eve") == []


def test_a_revoked_member_loses_access_on_the_next_request(world, auth):
    carol = auth("carol")
    assert carol.list(DATASET).status == 200
    assert revoke(auth("alice"), DATASET, "carol").status == 200
    assert carol.list(DATASET).status == 404
    assert grant(auth("alice"), DATASET, "carol", "editor").status == 200
    assert carol.prepare(DATASET, [jpeg_file()]).status == 200


def test_the_last_owner_can_be_neither_removed_nor_demoted(world, auth):
    alice = auth("alice")
    for reply in (revoke(alice, DATASET, "alice"), grant(alice, DATASET, "alice", "editor")):
        assert reply.status == 409
        assert "must keep an owner" in reply.json["detail"]
    assert grant(alice, DATASET, "bob", "owner").status == 200
    assert revoke(alice, DATASET, "alice").status == 200  # bob owns it now
    members = auth("bob").call("list_members", path="/datasets/7/members", path_params=D).json
    assert members == [{"sub": "bob", "role": "owner"}, {"sub": "carol", "role": "viewer"}]


def test_two_owners_removing_each_other_at_once_leave_one_owner(world, auth, monkeypatch):
    from uploads_core import members_table

    alice, bob = auth("alice"), auth("bob")
    assert grant(alice, DATASET, "bob", "owner").status == 200
    # Both read the other's role (owner) before either removal is written.
    both, original = threading.Barrier(2, timeout=10), members_table.remove
    one_at_a_time = threading.Lock()

    def remove_together(*args):
        both.wait()
        with one_at_a_time:  # DynamoDB runs transactions on these items one after the other
            return original(*args)

    monkeypatch.setattr(members_table, "remove", remove_together)
    replies = {}
    threads = [
        threading.Thread(target=lambda: replies.update(alice=revoke(alice, DATASET, "bob"))),
        threading.Thread(target=lambda: replies.update(bob=revoke(bob, DATASET, "alice"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert sorted(r.status for r in replies.values()) == [200, 409]
    owners = [sub for sub in ("alice", "bob") if members_table.get_role(DATASET, sub) == "owner"]
    assert len(owners) == 1


def test_creating_a_dataset_twice_is_idempotent_for_its_owner(world, auth):
    reply = auth("alice").call("put_dataset", path="/datasets/7", path_params=D)
    assert (reply.status, reply.json) == (200, {"dataset_id": DATASET, "role": "owner"})
    assert auth("eve").call("put_dataset", path="/datasets/7", path_params=D).json == {
        "detail": f"Dataset {DATASET} already exists"
    }


def test_a_member_needs_a_known_role_and_a_printable_sub(world, auth):
    alice = auth("alice")
    assert grant(alice, DATASET, "frank", "admin").status == 422
    for sub in ("#dataset", "a\x01b", "a/b", "x" * 256):
        assert grant(alice, DATASET, sub, "viewer").status == 422, sub


def test_removing_someone_who_is_not_a_member_is_a_404(world, auth):
    reply = revoke(auth("alice"), DATASET, "zed")
    assert (reply.status, reply.json["detail"]) == (404, "No member zed in dataset 7")


def test_mutating_calls_log_the_callers_sub(world, auth, monkeypatch):
    import io
    import json

    from uploads_core.telemetry import logger

    out = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", out)
    bob = auth("bob")
    bob.image("patch_image", world["image"], body={"width": 9})
    bob.confirm(DATASET, [world["image"]])
    bob.image("delete_image", world["image"])

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    messages = {line["message"] for line in lines if line.get("sub") == "bob"}
    assert {"Image updated", "Uploads confirmed", "Image deleted"} <= messages


def test_without_a_verified_token_in_jwt_mode_nothing_runs(world, auth, aws, s3, bucket):
    # A route that somehow escaped the authorizer: the function fails closed, as API Gateway would.
    before = snapshot(aws, s3, bucket)
    anonymous = auth(None)
    for reply in (anonymous.list(DATASET), anonymous.prepare(DATASET, [jpeg_file()])):
        assert (reply.status, reply.json) == (401, {"message": "Unauthorized"})
    assert snapshot(aws, s3, bucket) == before


def test_members_and_datasets_need_jwt_mode(api):
    reply = api.call("list_datasets")
    assert reply.status == 409
    assert "AuthMode=jwt" in reply.json["detail"]


def test_a_removal_based_on_a_role_changed_meanwhile_is_refused(world, auth, monkeypatch):
    from uploads_core import members_table

    alice, bob = auth("alice"), auth("bob")
    assert grant(alice, DATASET, "bob", "owner").status == 200
    # alice read carol's role (viewer); bob makes carol an owner before alice's removal is written.
    read, go, original = threading.Event(), threading.Event(), members_table.remove

    def remove_later(*args):
        read.set()
        assert go.wait(10)
        return original(*args)

    monkeypatch.setattr(members_table, "remove", remove_later)
    replies = {}
    removing = threading.Thread(target=lambda: replies.update(alice=revoke(alice, DATASET, "carol")))
    removing.start()
    assert read.wait(10)
    assert grant(bob, DATASET, "carol", "owner").status == 200
    go.set()
    removing.join(20)

    assert (replies["alice"].status, replies["alice"].json["detail"]) == (
        409,
        f"The members of dataset {DATASET} changed meanwhile; retry",
    )
    assert members_table.get_role(DATASET, "carol") == "owner"
    # The owners count still matches the owners: two of the three can go, the last cannot.
    assert revoke(alice, DATASET, "carol").status == 200
    assert revoke(alice, DATASET, "bob").status == 200
    assert revoke(alice, DATASET, "alice").status == 409


@pytest.mark.parametrize(
    ("first", "meanwhile"),
    [
        ("owner", "viewer"),  # both add frank, a new member: the second one's add finds him there
        ("owner", "owner"),  # both promote frank (a viewer first) to owner: the count counts him once
    ],
)
def test_a_grant_based_on_a_role_changed_meanwhile_is_refused(world, auth, monkeypatch, first, meanwhile):
    from uploads_core import members_table

    alice, bob = auth("alice"), auth("bob")
    assert grant(alice, DATASET, "bob", "owner").status == 200
    if meanwhile == "owner":
        assert grant(alice, DATASET, "frank", "viewer").status == 200
    read, go, original = threading.Event(), threading.Event(), members_table.set_role

    def set_later(*args):
        read.set()
        assert go.wait(10)
        return original(*args)

    monkeypatch.setattr(members_table, "set_role", set_later)
    replies = {}
    granting = threading.Thread(target=lambda: replies.update(alice=grant(alice, DATASET, "frank", first)))
    granting.start()
    assert read.wait(10)
    monkeypatch.setattr(members_table, "set_role", original)
    assert grant(bob, DATASET, "frank", meanwhile).status == 200
    go.set()
    granting.join(20)

    assert replies["alice"].status == 409
    assert members_table.get_role(DATASET, "frank") == meanwhile
    owners = [m["sub"] for m in alice.call("list_members", path="/datasets/7/members", path_params=D).json
              if m["role"] == "owner"]  # fmt: skip
    # The owners count matches the owners: all but the last can go.
    for sub in owners[1:]:
        assert revoke(alice, DATASET, sub).status == 200
    assert revoke(auth(owners[0]), DATASET, owners[0]).status == 409


def test_a_sub_the_router_cannot_match_is_a_422_about_the_sub(world, auth):
    # API Gateway routed it (one path segment); the characters are what is wrong.
    params = {"dataset_id": "7", "sub": "é`x"}
    reply = auth("alice").call(
        "put_member", path="/datasets/7/members/%C3%A9%60x", path_params=params, body={"role": "viewer"}
    )
    assert reply.status == 422
    assert [e["loc"] for e in reply.json["detail"]] == [["path", "sub"]]
