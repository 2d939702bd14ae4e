from concurrent.futures import ThreadPoolExecutor

from tests.unit.conftest import jpeg_file
from uploads_core import images_table
from uploads_core.models import ImageStatus


def test_concurrent_reservations_never_share_an_id(aws):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ranges = list(pool.map(images_table.reserve_ids, [5] * 40))
    ids = [i for r in ranges for i in r]
    assert sorted(ids) == list(range(1, 201))


def test_a_record_is_found_by_its_s3_key_with_one_index_query(api, aws_calls):
    tickets = api.prepare(3, [jpeg_file("a.jpg"), jpeg_file("b.jpg")]).json["uploads"]
    aws_calls.clear()

    image = images_table.find_by_key(tickets[1]["s3_key"])

    assert image.id == tickets[1]["image_id"]
    assert dict(aws_calls) == {("dynamodb", "Query"): 1}
    assert images_table.find_by_key("datasets/3/images/nope.jpg") is None


def test_update_is_refused_when_the_status_changed_meanwhile(api):
    ticket = api.prepare(3, [jpeg_file()]).json["uploads"][0]
    stale = images_table.get(ticket["image_id"])
    images_table.update(stale, {"status": ImageStatus.ERROR}, expected_status=ImageStatus.UPLOADING)

    assert images_table.update(stale, {"width": 4}, expected_status=ImageStatus.UPLOADING) is None
    assert images_table.get(ticket["image_id"]).width is None
