"""The dev-only local stack without servers: template reading, resource creation, and the HTTP API as
a WSGI app (werkzeug's test client). What runs servers is in tests/integration/test_local_stack.py."""

import base64
import json
import textwrap
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from werkzeug.test import Client

from local_stack.__main__ import main
from local_stack.api_gateway import MAX_REQUEST_BODY, HttpApi, Route, http_routes, static_site
from local_stack.template import (
    Names,
    create_resources,
    function_environment,
    functions,
    load_template,
    resources_of_type,
    unsupported,
)

BUCKET = "local-images-123456789012-us-east-1"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def write_template(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- Reading the template -----------------------------------------------------------------------------


def test_short_tags_become_long_form(tmp_path):
    path = write_template(
        tmp_path,
        """
        A: !Ref Param
        B: !GetAtt Table.Arn
        C: !GetAtt [Table, Arn]
        D: !Sub "${AWS::Region}-x"
        E: !If [IsProd, !Ref AWS::NoValue, !Not [!Equals [a, b]]]
        """,
    )
    loaded = load_template(path)
    assert loaded["A"] == {"Ref": "Param"}
    assert loaded["B"] == loaded["C"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert loaded["D"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert loaded["E"] == {
        "Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}]
    }


def test_the_default_template_is_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "ImagesTable" in load_template()["Resources"]
    assert load_template("template.yaml") == load_template()


def test_the_project_template_uses_nothing_the_local_stack_does_not_emulate(template):
    assert unsupported(template) == []


def test_refs_get_atts_and_subs_resolve_to_local_names(template):
    names = Names(template, region="eu-west-1", account_id="111122223333")
    scope = "eu-west-1:111122223333"
    assert names.ref("ImagesTable") == "local-ImagesTable"
    assert names.ref("ImagesBucket") == "local-images-111122223333-eu-west-1"
    queue_url = "https://sqs.eu-west-1.amazonaws.com/111122223333/local-ProcessUploadFailures"
    assert names.ref("ProcessUploadFailures") == queue_url  # a queue's Ref is its URL
    assert names.ref("AllowedOrigins") == ["*"]
    assert names.ref("LogLevel") == "INFO"
    assert names.ref("AWS::StackId").startswith(f"arn:aws:cloudformation:{scope}:stack/local/")
    again = Names(template, region="eu-west-1", account_id="111122223333")
    assert names.ref("AWS::StackId") == again.ref("AWS::StackId")  # stable: CURSOR_SECRET derives from it
    get_att = {"Fn::GetAtt": ["ImagesTable", "Arn"]}
    assert names.resolve(get_att) == f"arn:aws:dynamodb:{scope}:table/local-ImagesTable"
    get_att = {"Fn::GetAtt": ["ProcessUploadFailures", "Arn"]}
    assert names.resolve(get_att) == f"arn:aws:sqs:{scope}:local-ProcessUploadFailures"
    bucket_arn = "arn:aws:s3:::local-images-111122223333-eu-west-1"
    assert names.resolve({"Fn::Sub": "${AWS::StackName}/${ImagesBucket.Arn}"}) == f"local/{bucket_arn}"
    assert names.resolve({"Fn::Sub": ["${A}-${AWS::Partition}", {"A": {"Ref": "LogLevel"}}]}) == "INFO-aws"
    with pytest.raises(ValueError, match=r"Fn::GetAtt ProcessUploadFailures\.QueueName is not supported"):
        names.resolve({"Fn::GetAtt": ["ProcessUploadFailures", "QueueName"]})


def test_conditions_and_parameters_resolve_with_local_overrides(template):
    value = {
        "security": {"Fn::If": ["HasJwtAuth", "on", {"Ref": "AWS::NoValue"}]},
        "reserved": {"Fn::If": ["HasCleanupReservedConcurrency", {"Ref": "CleanupReservedConcurrency"}, 0]},
        "list": [{"Ref": "AWS::NoValue"}, "kept"],
    }
    assert Names(template).resolve(value) == {"security": "on", "reserved": "1", "list": ["kept"]}
    assert "security" not in Names(template, parameters={"AuthMode": "open"}).resolve(value)
    audience = Names(template, parameters={"JwtAudience": "a, b"}).ref("JwtAudience")
    assert audience == ["a", "b"]


def test_functions_merge_globals_and_find_their_layer_directories(template):
    info = functions(template)["ApiFunction"]
    assert (info.code_uri, info.handler, info.runtime) == (
        "functions/api",
        "images_api.handler.lambda_handler",
        "python3.13",
    )
    assert (info.layers, info.timeout, info.memory_size) == ({"CommonLayer": "layers/common"}, 29, 512)
    assert functions(template)["ProcessUploadFunction"].timeout == 60
    assert info.properties["Tracing"] == "Active"  # from Globals


def test_function_environment_merges_globals_and_resolves_to_strings(template):
    env = function_environment(template, "ApiFunction", stack_name="dev")
    assert env["IMAGES_TABLE"] == "dev-ImagesTable"
    assert env["IMAGES_BUCKET"] == "dev-images-123456789012-us-east-1"
    assert (env["POWERTOOLS_LOG_LEVEL"], env["POWERTOOLS_SERVICE_NAME"]) == ("INFO", "images-api")
    assert env["CURSOR_SECRET"].startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/dev/")
    assert env["AUTH_MODE"] == "jwt"
    assert (
        function_environment(template, "ApiFunction", parameters={"AuthMode": "open"})["AUTH_MODE"] == "open"
    )
    assert function_environment(template, "ProcessUploadFunction")["MAX_IMAGE_PIXELS"] == "50000000"
    tpl = {
        "Globals": {"Function": {"Environment": {"Variables": {"A": "global", "B": True}}}},
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Handler": "m.h", "Environment": {"Variables": {"A": "own", "C": 3}}},
            }
        },
    }
    assert function_environment(tpl, "F") == {"A": "own", "B": "true", "C": "3"}


def function(**props) -> dict:
    return {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "m.h", **props}}


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        (
            {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {"X": {"Fn::Select": [0, ["a"]]}}}},
            "Fn::Select",
        ),
        (
            {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {"TimeToLiveSpecification": {}}}},
            "T.TimeToLiveSpecification",
        ),
        ({"Q": {"Type": "AWS::SQS::Queue", "Properties": {"FifoQueue": True}}}, "Q.FifoQueue"),
        ({"F": function(Events={"E": {"Type": "SQS"}})}, "F.Events.E: an event of Type SQS"),
        (
            {"F": function(Events={"E": {"Type": "HttpApi", "Properties": {"Method": "ANY", "Path": "/x"}}})},
            "catch-all",
        ),
        (
            {
                "F": function(
                    Events={"E": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/{p+}"}}}
                )
            },
            "catch-all",
        ),
        ({"F": function(Events={"E": {"Type": "HttpApi"}})}, "catch-all"),
        (
            {
                "F": function(
                    Events={
                        "E": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)", "Input": "{}"}}
                    }
                )
            },
            "F.Events.E.Input",
        ),
        (
            {"F": function(Events={"E": {"Type": "ScheduleV2", "Properties": {}}})},
            "an event of Type ScheduleV2",
        ),
        (
            {"F": function(EventInvokeConfig={"DestinationConfig": {"OnSuccess": {"Type": "SQS"}}})},
            "F.EventInvokeConfig",
        ),
        (
            {"F": function(EventInvokeConfig={"DestinationConfig": {"OnFailure": {"Type": "SNS"}}})},
            "F.EventInvokeConfig",
        ),
    ],
)
def test_what_the_local_stack_does_not_emulate_is_named(resources, problem):
    (found,) = unsupported({"Resources": resources})
    assert problem in found
    assert found.endswith("is not supported by the local stack")


def test_the_stack_refuses_to_start_on_an_unsupported_construct(tmp_path, capsys):
    path = write_template(
        tmp_path,
        """
        Resources:
          Table:
            Type: AWS::DynamoDB::Table
            Properties:
              TableName: !Select [0, [a, b]]
        """,
    )
    assert main(["--template", str(path), "--api-port", "0", "--aws-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "template.yaml: Fn::Select is not supported by the local stack" in err
    assert "template.yaml: Table.TableName is not supported by the local stack" in err


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_create_resources_builds_tables_buckets_and_queues(template, region, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        clients = [boto3.client(service, region_name=region) for service in ("dynamodb", "s3", "sqs")]
        dynamodb, s3, sqs = clients
        created = create_resources(Names(template, region=region), *clients)
        assert create_resources(Names(template, region=region), *clients) == created  # idempotent
        bucket = f"local-images-123456789012-{region}"
        assert (created["ImagesTable"], created["ImagesBucket"]) == ("local-ImagesTable", bucket)
        assert created["ProcessUploadFailures"] == "local-ProcessUploadFailures"
        buckets = resources_of_type(template, "AWS::S3::Bucket")
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {created[b] for b in buckets}
        table = dynamodb.describe_table(TableName="local-ImagesTable")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]}
        assert set(indexes) == {"dataset-index", "dataset-status-index", "s3-key-index", "uploading-index"}
        assert indexes["dataset-index"] == [
            {"AttributeName": "dataset_id", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ]
        assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [
            {
                "AllowedHeaders": ["*"],
                "AllowedMethods": ["PUT", "GET", "HEAD"],
                "AllowedOrigins": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3000,
            }
        ]
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        url = sqs.get_queue_url(QueueName="local-ProcessUploadFailures")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["MessageRetentionPeriod"] == "1209600"
        assert attributes["QueueArn"] == Names(template, region=region).resolve(
            {"Fn::GetAtt": ["ProcessUploadFailures", "Arn"]}
        )


# --- The HTTP API as a WSGI app -----------------------------------------------------------------------

ROUTES = [
    Route("GET", "/images/{image_id}", "ById"),
    Route("GET", "/images/latest", "Latest"),
    Route("DELETE", "/images/{image_id}", "Delete"),
    Route("GET", "/datasets/{dataset_id}/images", "List"),
    Route("POST", "/echo", "Echo"),
]
CORS = {
    "AllowOrigins": ["https://app.example.com", "https://*.preview.example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["content-type"],
    "ExposeHeaders": ["x-next-cursor"],
    "MaxAge": 600,
}


class Recorder:
    """A stand-in for the functions: records the events, answers per path."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, function: str, event: dict):
        self.events.append(event)
        if event["rawPath"] == "/images/boom":
            raise RuntimeError("handler bug")
        if event["rawPath"] == "/images/raw":
            return {"items": [1]}  # no statusCode: the whole result is the JSON body
        if event["rawPath"] == "/images/png":
            return {
                "statusCode": 201,
                "headers": {"Content-Type": "image/png"},
                "isBase64Encoded": True,
                "body": base64.b64encode(b"\x89PNG").decode(),
            }
        if event["rawPath"] == "/images/bad":
            return {"statusCode": 200, "body": {"a": 1}}
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json", "access-control-allow-origin": "https://evil"},
            "body": json.dumps({"function": function}),
        }


@pytest.fixture
def api():
    recorder = Recorder()
    client = Client(HttpApi(ROUTES, recorder, cors=CORS))
    client.events = recorder.events
    return client


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/images/latest", "Latest", None),  # a literal segment beats {param}
        ("GET", "/images/42", "ById", {"image_id": "42"}),
        ("DELETE", "/images/42", "Delete", {"image_id": "42"}),
        ("GET", "/datasets/7/images", "List", {"dataset_id": "7"}),
        ("GET", "/images/a%20b%2Fc", "ById", {"image_id": "a b/c"}),  # decoded, %2F in its segment
    ],
)
def test_the_most_specific_route_takes_the_request(api, method, path, function, params):
    response = api.open(path, method=method)
    assert response.json == {"function": function}
    assert api.events[-1].get("pathParameters") == params


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/datasets/7/images"), ("GET", "/images"), ("GET", "/images/1/x"), ("PUT", "/images/1")],
)
def test_requests_no_route_takes_get_api_gateways_404(api, method, path):
    response = api.open(path, method=method)
    assert (response.status_code, response.json) == (404, {"message": "Not Found"})
    assert api.events == []


def test_the_event_has_the_payload_2_0_shape(api):
    response = api.get(
        "/images/a%20b?x=1&x=2&empty=&q=%C3%A9+f",
        headers=[("User-Agent", "curl/8"), ("Accept", "a"), ("Host", "127.0.0.1:3000")],
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert response.headers["apigw-requestid"]
    event = api.events[-1]
    assert (event["version"], event["routeKey"], event["rawPath"]) == (
        "2.0",
        "GET /images/{image_id}",
        "/images/a b",
    )
    assert event["rawQueryString"] == "x=1&x=2&empty=&q=%C3%A9+f"  # as received
    assert event["queryStringParameters"] == {"x": "1,2", "empty": "", "q": "é f"}
    assert (event["headers"]["user-agent"], event["headers"]["x-forwarded-for"]) == ("curl/8", "10.0.0.9")
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/images/a b",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.9",
        "userAgent": "curl/8",
    }
    assert (context["accountId"], context["apiId"], context["stage"]) == ("123456789012", "local", "$default")
    assert (context["domainName"], context["domainPrefix"]) == ("127.0.0.1:3000", "127.0.0.1")
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert context["routeKey"] == "GET /images/{image_id}"
    assert "authorizer" not in context


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("application/json; charset=utf-8", '{"name": "é"}'.encode(), False),
        (None, b"plain text", False),
        ("image/png", b"plain ascii", True),
        (None, b"\xff\xd8\xff\xe0", True),
    ],
)
def test_text_bodies_arrive_as_text_and_binary_ones_base64_encoded(api, content_type, body, base64_encoded):
    api.post("/echo", data=body, headers={"Content-Type": content_type} if content_type else {})
    event = api.events[-1]
    assert event["isBase64Encoded"] is base64_encoded
    assert (base64.b64decode(event["body"]) if base64_encoded else event["body"].encode()) == body


def test_results_become_responses_as_api_gateway_makes_them(api):
    raw = api.get("/images/raw")
    assert (raw.status_code, raw.content_type, raw.json) == (200, "application/json", {"items": [1]})
    png = api.get("/images/png")
    assert (png.status_code, png.headers["Content-Type"], png.data) == (201, "image/png", b"\x89PNG")


@pytest.mark.parametrize("path", ["/images/boom", "/images/bad"])
def test_a_failing_function_or_an_unusable_result_is_a_500_without_details(api, path, caplog):
    response = api.get(path)
    assert (response.status_code, response.json) == (500, {"message": "Internal Server Error"})
    assert "handler bug" not in response.text
    assert "ById failed for GET /images/{image_id}" in caplog.text


def test_bodies_over_10_mib_are_refused_with_413(api):
    response = api.post("/echo", data=b"x" * (MAX_REQUEST_BODY + 1))
    assert (response.status_code, response.json) == (413, {"message": "Request Entity Too Large"})
    assert api.events == []


def test_preflights_are_answered_by_the_gateway(api):
    headers = {"Origin": "https://pr-1.preview.example.com", "Access-Control-Request-Method": "GET"}
    response = api.options("/images/42", headers=headers)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://pr-1.preview.example.com"
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert api.events == []


def test_allowed_origins_get_cors_headers_and_the_function_cannot_override_them(api):
    allowed = api.get("/images/1", headers={"Origin": "https://app.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Expose-Headers"] == "x-next-cursor"
    other = api.get("/images/1", headers={"Origin": "https://elsewhere.com"})
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_templates_routes_are_its_http_api_events(template):
    routes = http_routes(template)
    assert Route("POST", "/datasets/{dataset_id}/images/prepare-upload", "ApiFunction") in routes
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    assert len(routes) == sum(1 for event in events if event["Type"] == "HttpApi")


def test_the_templates_api_serves_the_upload_page_and_its_config(template):
    api = Client(
        HttpApi.from_template(
            Names(template, parameters={"AuthMode": "open"}), Recorder(), fallback=static_site(None)
        )
    )
    index = api.get("/")
    assert index.status_code == 200
    assert index.content_type == "text/html; charset=utf-8"
    assert api.get("/web/").data == index.data
    assert api.get("/web/app.js").content_type.startswith("text/javascript")
    assert api.get("/config.json").json == {}
    assert api.get("/web/%2e%2e/template.yaml").status_code == 404
    assert api.post("/").status_code == 404
    jwt = Client(HttpApi(ROUTES, Recorder(), fallback=static_site("http://127.0.0.1:3000/_local/oidc")))
    assert jwt.get("/config.json").json == {
        "oidc": {"issuer": "http://127.0.0.1:3000/_local/oidc", "client_id": "image-uploads-local"}
    }
    preflight = api.options(
        "/images/1", headers={"Origin": "http://localhost:8080", "Access-Control-Request-Method": "PATCH"}
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"  # AllowedOrigins "*"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_listing_a_bucket_again_and_again_keeps_no_copy_of_its_objects(template):
    import gc

    from moto.s3.models import FakeKey

    from local_stack.stack import keep_no_dead_objects

    keep_no_dead_objects()  # as the local stack does at start
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        create_resources(Names(template), boto3.client("dynamodb", region_name="us-east-1"), s3)
        for i in range(50):
            s3.put_object(Bucket=BUCKET, Key=f"datasets/1/images/{i}.jpg", Body=b"x" * 1000)
        s3.delete_object(Bucket=BUCKET, Key="datasets/1/images/0.jpg")
        gc.collect()
        before = sum(isinstance(o, FakeKey) for o in gc.get_objects())

        for _ in range(10):  # moto deep-copies every version of the bucket for each call
            s3.list_object_versions(Bucket=BUCKET, Prefix="datasets/1/images/")
        gc.collect()

        assert sum(isinstance(o, FakeKey) for o in gc.get_objects()) == before


def test_listing_reads_no_object_bytes_and_leaves_every_object_whole(template, monkeypatch):
    import gc

    from moto.s3.models import FakeKey

    from local_stack.stack import list_versions_without_copying_bytes

    list_versions_without_copying_bytes()  # as the local stack does at start
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        create_resources(Names(template), boto3.client("dynamodb", region_name="us-east-1"), s3)
        for i in range(20):
            s3.put_object(Bucket=BUCKET, Key=f"datasets/1/images/{i}.jpg", Body=bytes([i]) * 1000)
        s3.delete_object(Bucket=BUCKET, Key="datasets/1/images/0.jpg")  # a marker holds its key too
        reads = []
        value = FakeKey.value
        monkeypatch.setattr(FakeKey, "value", property(lambda key: reads.append(key.name) or value.fget(key)))

        listed = s3.list_object_versions(Bucket=BUCKET, Prefix="datasets/1/images/")
        gc.collect()  # the listing's copies are gone: the versions' bytes must not be

        assert reads == []
        assert (len(listed["Versions"]), len(listed["DeleteMarkers"])) == (20, 1)
        monkeypatch.undo()
        for i in range(1, 20):
            body = s3.get_object(Bucket=BUCKET, Key=f"datasets/1/images/{i}.jpg")["Body"].read()
            assert body == bytes([i]) * 1000
