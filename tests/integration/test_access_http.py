"""Who may touch a dataset, over HTTP on `make run AUTH=jwt`: sharing and revoking follow at once."""

from tests import sample_images


def test_sharing_as_viewer_then_revoking_is_followed_on_the_next_request(jwt_stack):
    alice, bob = jwt_stack.as_user("alice-http"), jwt_stack.as_user("bob-http")
    dataset = jwt_stack.dataset()
    url = jwt_stack.url
    assert alice.put(url(f"/datasets/{dataset}")).status_code == 201
    photo = sample_images.jpeg()
    files = [{"filename": "car.jpg", "file_size": len(photo), "mime_type": "image/jpeg"}]
    ticket = alice.post(url(f"/datasets/{dataset}/images/prepare-upload"), json={"files": files}).json()
    ticket = ticket["uploads"][0]
    assert jwt_stack.http.put(ticket["upload_url"], data=photo, headers={"Content-Type": "image/jpeg"}).ok
    confirmed = alice.post(
        url(f"/datasets/{dataset}/images/confirm-upload"), json={"image_ids": [ticket["image_id"]]}
    )
    assert confirmed.json()["updated_count"] == 1

    # Not a member: the dataset and its image do not exist for bob.
    assert bob.get(url(f"/datasets/{dataset}/images")).status_code == 404
    assert bob.get(url(f"/images/{ticket['image_id']}")).status_code == 404

    shared = alice.put(url(f"/datasets/{dataset}/members/bob-http"), json={"role": "viewer"})
    assert shared.json() == {"sub": "bob-http", "role": "viewer"}
    assert [i["id"] for i in bob.get(url(f"/datasets/{dataset}/images")).json()] == [ticket["image_id"]]
    link = bob.get(url(f"/images/{ticket['image_id']}/download-url")).json()["download_url"]
    assert jwt_stack.http.get(link).content == photo
    refused = bob.delete(url(f"/images/{ticket['image_id']}"))
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        f"This needs the editor role in dataset {dataset}; you are a viewer",
    )
    assert {"dataset_id": dataset, "role": "viewer"} in bob.get(url("/datasets")).json()

    assert alice.delete(url(f"/datasets/{dataset}/members/bob-http")).status_code == 200
    assert bob.get(url(f"/datasets/{dataset}/images")).status_code == 404
    assert bob.get(url(f"/images/{ticket['image_id']}")).status_code == 404
    assert alice.get(url(f"/images/{ticket['image_id']}")).json()["status"] == "uploaded"


def test_without_a_token_no_route_reaches_a_function(jwt_stack):
    for method, path in [
        ("GET", "/datasets"),
        ("PUT", "/datasets/1"),
        ("GET", "/datasets/1/images"),
        ("POST", "/datasets/1/images/prepare-upload"),
        ("DELETE", "/images/1"),
        ("PUT", "/datasets/1/members/x"),
    ]:
        reply = jwt_stack.http.request(method, jwt_stack.url(path))
        assert (reply.status_code, reply.json()) == (401, {"message": "Unauthorized"}), (method, path)
