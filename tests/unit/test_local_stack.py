"""The dev-only local stack: template reading, resource creation, Lambda runtime and API Gateway emulation."""

import base64
import http.client
import json
import os
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from local_stack.api_gateway import (
    MAX_REQUEST_BODY,
    ApiServer,
    HttpApi,
    InvalidResponse,
    Request,
    Route,
    build_event,
    match_route,
    translate_response,
)
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.stack import LocalStack
from local_stack.template import (
    LocalNames,
    cors_configuration,
    create_resources,
    function_environment,
    functions,
    http_routes,
    load_template,
    resolve,
    resources_of_type,
    s3_cors_rules,
)

BUCKET = "local-images-123456789012-us-east-1"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def write_template(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- template.py ----------------------------------------------------------------------------------


def test_short_tags_become_long_form(tmp_path):
    path = write_template(
        tmp_path,
        """
        A: !Ref Param
        B: !GetAtt Table.StreamArn
        C: !GetAtt [Table, Arn]
        D: !Sub "${AWS::Region}-x"
        E: !Sub ["${X}-y", {X: !Ref Param}]
        F: !Join ["-", [!Select [0, !Split [",", "a,b"]], !ImportValue Other]]
        G: !If [IsProd, !Base64 text, !Ref AWS::NoValue]
        H: !Not [!Equals [a, b]]
        I: !FindInMap [M, k, v]
        J: !GetAZs ""
        K: !Cidr [10.0.0.0/16, 2, 8]
        """,
    )
    loaded = load_template(path)
    assert loaded["A"] == {"Ref": "Param"}
    assert loaded["B"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert loaded["C"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert loaded["D"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert loaded["E"] == {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Param"}}]}
    assert loaded["F"] == {
        "Fn::Join": ["-", [{"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}, {"Fn::ImportValue": "Other"}]]
    }
    assert loaded["G"] == {"Fn::If": ["IsProd", {"Fn::Base64": "text"}, {"Ref": "AWS::NoValue"}]}
    assert loaded["H"] == {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}
    assert loaded["I"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert loaded["J"] == {"Fn::GetAZs": ""}
    assert loaded["K"] == {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}


def test_default_template_is_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "ImagesTable" in load_template()["Resources"]


def test_refs_resolve_to_local_physical_names(template):
    names = LocalNames(template)
    assert names.ref("ImagesTable") == "local-ImagesTable"
    assert names.ref("ImagesBucket") == BUCKET
    assert names.ref("HttpApi") == "HttpApi"
    assert names.ref("AllowedOrigins") == ["*"]
    assert names.ref("LogLevel") == "INFO"


def test_bucket_names_stay_valid_for_s3_whatever_the_stack_name(template):
    assert (
        LocalNames(template, stack_name="My_Stack")
        .physical_name("ImagesBucket")
        .startswith("my-stack-images-123456789012-")
    )
    no_name = {"Resources": {"Uploads": {"Type": "AWS::S3::Bucket"}}}
    assert LocalNames(no_name, stack_name="Dev").physical_name("Uploads") == "dev-uploads"


def test_table_name_property_wins_over_the_generated_name():
    tpl = {
        "Resources": {
            "T": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {"TableName": {"Fn::Sub": "${AWS::StackName}-t"}},
            }
        }
    }
    assert resolve(tpl, {"Ref": "T"}, stack_name="dev") == "dev-t"


def test_pseudo_parameters_and_get_att_resolve(template):
    value = {
        "region": {"Ref": "AWS::Region"},
        "account": {"Ref": "AWS::AccountId"},
        "stack_id": {"Ref": "AWS::StackId"},
        "suffix": {"Ref": "AWS::URLSuffix"},
        "partition": {"Ref": "AWS::Partition"},
        "table_arn": {"Fn::GetAtt": ["ImagesTable", "Arn"]},
        "bucket_arn": {"Fn::GetAtt": "ImagesBucket.Arn"},
        "other": {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]},
    }
    out = resolve(template, value, region="eu-west-1", account_id="111122223333")
    assert out["region"] == "eu-west-1"
    assert out["account"] == "111122223333"
    assert out["stack_id"].startswith("arn:aws:cloudformation:eu-west-1:111122223333:stack/local/")
    assert out["suffix"] == "amazonaws.com"
    assert out["partition"] == "aws"
    assert out["table_arn"] == "arn:aws:dynamodb:eu-west-1:111122223333:table/local-ImagesTable"
    assert out["bucket_arn"] == "arn:aws:s3:::local-images-111122223333-eu-west-1"
    assert isinstance(out["other"], str)
    assert out["other"]


def test_sub_handles_params_pseudo_attributes_literals_and_the_list_form(template):
    text = "${AWS::StackName}/${ImagesTable}/${ImagesBucket.Arn}/${!Literal}/${Extra}"
    out = resolve(template, {"Fn::Sub": [text, {"Extra": {"Ref": "LogLevel"}}]})
    assert out == f"local/local-ImagesTable/arn:aws:s3:::{BUCKET}/${{Literal}}/INFO"


def test_conditions_mappings_and_list_functions_resolve():
    tpl = {
        "Parameters": {
            "Env": {"Type": "String", "Default": "prod"},
            "Ids": {"Type": "CommaDelimitedList", "Default": "a, b"},
        },
        "Mappings": {"Sizes": {"prod": {"Memory": 1024}}},
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
            "Either": {"Fn::Or": [{"Condition": "IsDev"}, {"Fn::And": [{"Condition": "IsProd"}, True]}]},
        },
    }
    value = {
        "if": {"Fn::If": ["IsProd", "big", "small"]},
        "gone": {"Fn::If": ["IsDev", "x", {"Ref": "AWS::NoValue"}]},
        "either": {"Fn::If": ["Either", 1, 0]},
        "ids": {"Ref": "Ids"},
        "joined": {"Fn::Join": ["+", {"Ref": "Ids"}]},
        "second": {"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]},
        "memory": {"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Memory"]},
        "azs": {"Fn::GetAZs": ""},
    }
    out = resolve(tpl, value)
    assert out == {
        "if": "big",
        "either": 1,
        "ids": ["a", "b"],
        "joined": "a+b",
        "second": "y",
        "memory": 1024,
        "azs": ["us-east-1a", "us-east-1b", "us-east-1c"],
    }
    assert resolve(tpl, {"Ref": "Env"}, parameters={"Env": "dev"}) == "dev"


def test_functions_merge_globals_and_find_layer_directories(template):
    info = functions(template)["ApiFunction"]
    assert info.code_uri == "functions/api"
    assert info.handler == "images_api.handler.lambda_handler"
    assert info.runtime == "python3.13"
    assert info.layers == ("layers/common",)
    assert info.timeout == 29
    assert info.memory_size == 512


def test_function_environment_merges_globals_and_resolves_to_strings(template):
    env = function_environment(template, "ApiFunction", stack_name="dev")
    assert env["IMAGES_TABLE"] == "dev-ImagesTable"
    assert env["IMAGES_BUCKET"] == "dev-images-123456789012-us-east-1"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["POWERTOOLS_SERVICE_NAME"] == "images-api"
    assert env["CURSOR_SECRET"].startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/dev/")
    assert all(isinstance(v, str) for v in env.values())


def test_function_environment_overrides_globals_and_stringifies_scalars():
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


def test_http_routes_come_from_every_http_api_event(template):
    routes = http_routes(template)
    assert ("POST", "/datasets/{dataset_id}/images/prepare-upload", "ApiFunction") in routes
    assert ("DELETE", "/images/{image_id}", "ApiFunction") in routes
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    assert len(routes) == sum(1 for event in events if event["Type"] == "HttpApi")


def test_http_routes_normalise_methods_and_the_catch_all_event():
    tpl = {
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Handler": "m.h",
                    "Events": {
                        "Any": {
                            "Type": "HttpApi",
                            "Properties": {"Method": "any", "Path": "/files/{proxy+}"},
                        },
                        "Lower": {"Type": "HttpApi", "Properties": {"Method": "get", "Path": "/x"}},
                        "Default": {"Type": "HttpApi"},
                        "Queue": {"Type": "SQS", "Properties": {"Queue": "arn"}},
                    },
                },
            }
        }
    }
    assert http_routes(tpl) == [("ANY", "/files/{proxy+}", "F"), ("GET", "/x", "F"), ("ANY", "$default", "F")]


def test_cors_configuration_of_the_http_api_is_resolved(template):
    assert cors_configuration(template) == {
        "AllowOrigins": ["*"],
        "AllowMethods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        "AllowHeaders": ["content-type", "authorization"],
        "ExposeHeaders": ["x-next-cursor"],
        "MaxAge": 600,
    }


def test_bucket_cors_rules_are_converted_to_the_s3_api_shape():
    rules = s3_cors_rules(
        {
            "CorsRules": [
                {
                    "Id": "r",
                    "AllowedOrigins": ["*"],
                    "AllowedMethods": ["PUT"],
                    "AllowedHeaders": ["*"],
                    "ExposedHeaders": ["ETag"],
                    "MaxAge": "300",
                }
            ]
        }
    )
    assert rules == [
        {
            "ID": "r",
            "AllowedOrigins": ["*"],
            "AllowedMethods": ["PUT"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 300,
        }
    ]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_create_resources_builds_the_table_with_its_indexes_and_the_bucket_with_cors(template, region):
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=region)
        s3 = boto3.client("s3", region_name=region)
        created = create_resources(template, dynamodb, s3, region=region)
        assert create_resources(template, dynamodb, s3, region=region) == created  # idempotent

        bucket = f"local-images-123456789012-{region}"
        assert created["ImagesTable"] == "local-ImagesTable"
        assert created["ImagesBucket"] == bucket
        buckets = resources_of_type(template, "AWS::S3::Bucket")
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {created[b] for b in buckets}
        table = dynamodb.describe_table(TableName="local-ImagesTable")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]}
        assert indexes["dataset-index"] == [
            {"AttributeName": "dataset_id", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ]
        assert set(indexes) == {"dataset-index", "dataset-status-index", "s3-key-index", "uploading-index"}
        assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [
            {
                "AllowedHeaders": ["*"],
                "AllowedMethods": ["PUT", "GET", "HEAD"],
                "AllowedOrigins": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3000,
            }
        ]


# --- api_gateway.py: routing and translation ------------------------------------------------------

ROUTES = [
    Route("GET", "/images/{image_id}", "ById"),
    Route("GET", "/images/latest", "Latest"),
    Route("ANY", "/images/{proxy+}", "Greedy"),
    Route("ANY", "/images/{image_id}", "AnyById"),
    Route("GET", "/datasets/{dataset_id}/images", "List"),
]


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/images/latest", "Latest", {}),  # a literal segment beats {param}
        ("GET", "/images/42", "ById", {"image_id": "42"}),  # an explicit method beats ANY
        ("DELETE", "/images/42", "AnyById", {"image_id": "42"}),  # {param} beats {proxy+}
        ("GET", "/images/42/download-url", "Greedy", {"proxy": "42/download-url"}),
        ("get", "/datasets/7/images", "List", {"dataset_id": "7"}),
    ],
)
def test_the_most_specific_route_wins(method, path, function, params):
    route, found = match_route(ROUTES, method, path)
    assert (route.function, found) == (function, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/datasets/7/images"),
        ("GET", "/datasets/7"),
        ("GET", "/images"),
        ("GET", "/datasets/7/images/"),
    ],
)
def test_unmatched_requests_find_no_route(method, path):
    assert match_route(ROUTES, method, path) is None


def test_default_route_catches_what_nothing_else_matches():
    routes = [*ROUTES, Route("ANY", "$default", "Fallback")]
    assert match_route(routes, "POST", "/nowhere")[0].key == "$default"
    assert match_route(routes, "GET", "/images/latest")[0].function == "Latest"


def test_path_parameters_are_url_decoded_and_keep_encoded_slashes_in_one_segment():
    route, params = match_route(ROUTES, "GET", "/images/a%20b%2Fc")
    assert route.function == "ById"
    assert params == {"image_id": "a b/c"}


def event_for(request: Request, routes: list[Route] = ROUTES) -> dict:
    route, params = match_route(routes, request.method, request.raw_path)
    return build_event(
        request, route, params, request_id="req-1", now=datetime(2026, 3, 5, 19, 3, 58, tzinfo=UTC)
    )


def test_event_has_the_payload_2_0_shape():
    request = Request(
        "GET",
        "/images/a%20b?x=1&x=2&empty=&flag&q=%C3%A9+f",
        headers=[("Host", "127.0.0.1:3000"), ("User-Agent", "curl/8"), ("Accept", "a"), ("accept", "b")],
        source_ip="10.0.0.9",
    )
    event = event_for(request)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /images/{image_id}"
    assert event["rawPath"] == "/images/a b"
    assert event["rawQueryString"] == "x=1&x=2&empty=&flag&q=%C3%A9+f"  # exactly as received
    assert event["queryStringParameters"] == {"x": "1,2", "empty": "", "flag": "", "q": "é f"}
    assert event["pathParameters"] == {"image_id": "a b"}
    assert event["headers"]["accept"] == "a,b"
    assert event["headers"]["user-agent"] == "curl/8"
    assert event["headers"]["x-forwarded-for"] == "10.0.0.9"
    assert "cookies" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "127.0.0.1:3000",
        "domainPrefix": "127.0.0.1",
        "http": {
            "method": "GET",
            "path": "/images/a b",
            "protocol": "HTTP/1.1",
            "sourceIp": "10.0.0.9",
            "userAgent": "curl/8",
        },
        "requestId": "req-1",
        "routeKey": "GET /images/{image_id}",
        "stage": "$default",
        "time": "05/Mar/2026:19:03:58 +0000",
        "timeEpoch": 1772737438000,
    }


def test_event_omits_query_and_path_parameters_when_there_are_none():
    event = event_for(Request("GET", "/images/latest"))
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event


def test_cookies_move_from_the_headers_to_their_own_field():
    event = event_for(Request("GET", "/images/1", headers=[("Cookie", "a=1; b=2"), ("Cookie", "c=3")]))
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_text_bodies_arrive_as_text():
    body = json.dumps({"name": "é"}).encode()
    event = event_for(
        Request("POST", "/images/1", [("Content-Type", "application/json; charset=utf-8")], body)
    )
    assert event["body"] == '{"name": "\\u00e9"}'
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("image/png", b"plain ascii"), ("application/octet-stream", b"x"), (None, b"\xff\xd8\xff\xe0")],
)
def test_binary_bodies_arrive_base64_encoded(content_type, body):
    headers = [("Content-Type", content_type)] if content_type else []
    event = event_for(Request("POST", "/images/1", headers, body))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_a_result_without_status_code_becomes_a_json_200():
    response = translate_response({"items": [1]})
    assert (response.status, response.headers, json.loads(response.body)) == (
        200,
        [("Content-Type", "application/json")],
        {"items": [1]},
    )
    assert translate_response("hello").body == b'"hello"'


def test_a_full_result_maps_to_status_headers_cookies_and_body():
    response = translate_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "image/png", "X-Count": 2},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "cookies": ["s=1; HttpOnly"],
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert response.headers == [
        ("Content-Type", "image/png"),
        ("X-Count", "2"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("Set-Cookie", "s=1; HttpOnly"),
    ]
    assert response.body == b"\x89PNG"


@pytest.mark.parametrize(
    "result",
    [{"statusCode": "oops"}, {"statusCode": 200, "body": {"a": 1}}, {"statusCode": 200, "body": object()}],
)
def test_results_api_gateway_cannot_use_are_rejected(result):
    with pytest.raises(InvalidResponse):
        translate_response(result)


# --- api_gateway.py over HTTP ---------------------------------------------------------------------

CORS = {
    "AllowOrigins": ["https://app.example.com", "https://*.preview.example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["content-type"],
    "ExposeHeaders": ["x-next-cursor"],
    "MaxAge": 600,
}


@pytest.fixture
def server():
    """An API server on a free port whose 'function' echoes the event (or fails on /images/boom)."""
    events: list[dict] = []

    def invoke(function: str, event: dict) -> dict:
        events.append(event)
        if event["rawPath"] == "/images/boom":
            raise RuntimeError("handler bug")
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json", "access-control-allow-origin": "https://evil"},
            "body": json.dumps({"function": function}),
        }

    api = HttpApi(ROUTES, invoke, cors=CORS)
    srv = ApiServer(api, port=0).start()
    srv.events = events
    yield srv
    srv.stop()


def test_server_invokes_the_matched_function_with_the_raw_request(server):
    response = requests.delete(f"{server.url}/images/42?b=2&b=3", data=b"\xff\x00", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"function": "AnyById"}
    assert response.headers["apigw-requestid"]
    event = server.events[-1]
    assert event["rawQueryString"] == "b=2&b=3"
    assert event["queryStringParameters"] == {"b": "2,3"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00"


def test_unknown_routes_get_api_gateway_404(server):
    response = requests.get(f"{server.url}/nothing/here", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert server.events == []


def test_handler_exceptions_become_500_without_details(server, caplog):
    response = requests.get(f"{server.url}/images/boom", timeout=5)
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "handler bug" not in response.text
    assert "RuntimeError: handler bug" in caplog.text


def test_preflight_is_answered_by_the_gateway(server):
    response = requests.options(
        f"{server.url}/images/42",
        headers={"Origin": "https://pr-1.preview.example.com", "Access-Control-Request-Method": "GET"},
        timeout=5,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://pr-1.preview.example.com"
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert server.events == []


def test_allowed_origins_get_cors_headers_and_the_function_cannot_override_them(server):
    allowed = requests.get(f"{server.url}/images/1", headers={"Origin": "https://app.example.com"}, timeout=5)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Expose-Headers"] == "x-next-cursor"

    other = requests.get(f"{server.url}/images/1", headers={"Origin": "https://elsewhere.com"}, timeout=5)
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers


def test_bodies_over_10_mib_are_refused_with_413(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("POST", "/images/1")
    conn.putheader("Content-Length", str(MAX_REQUEST_BODY + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"message": "Request Entity Too Large"}
    conn.close()


def test_chunked_request_bodies_are_read(server):
    response = requests.delete(f"{server.url}/images/1", data=iter([b"ab", b"cd"]), timeout=5)
    assert response.status_code == 200
    assert server.events[-1]["body"] == "abcd"


# --- lambda_runtime.py and the whole stack ----------------------------------------------------------


@pytest.fixture
def stub_function(tmp_path):
    """A template whose function and layer are tiny modules written into tmp_path."""
    module = f"stub_{uuid.uuid4().hex}"
    layer_pkg = f"stublayer_{uuid.uuid4().hex}"
    (tmp_path / "fn").mkdir()
    (tmp_path / "layer" / layer_pkg).mkdir(parents=True)
    (tmp_path / "layer" / layer_pkg / "__init__.py").write_text("VALUE = 'from layer'\n")
    (tmp_path / "fn" / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import boto3
            import {layer_pkg}

            IMPORTS = []
            IMPORTS.append(os.environ["TABLE"])  # read at cold start

            def handler(event, context):
                if event.get("list_tables"):
                    return boto3.client("dynamodb").list_tables()["TableNames"]
                return {{
                    "pid": os.getpid(),
                    "imports": len(IMPORTS),
                    "layer": {layer_pkg}.VALUE,
                    "table": os.environ["TABLE"],
                    "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
                    "function_name": context.function_name,
                    "request_id": context.aws_request_id,
                    "remaining": context.get_remaining_time_in_millis(),
                    "event": event,
                }}
            """
        )
    )
    template = {
        "Globals": {"Function": {"Timeout": 10, "Layers": [{"Ref": "Layer"}]}},
        "Resources": {
            "Layer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layer/"}},
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                },
            },
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "fn/",
                    "Handler": f"{module}.handler",
                    "Runtime": "python3.13",
                    "Environment": {"Variables": {"TABLE": {"Ref": "Table"}}},
                    "Events": {
                        "Get": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/things/{id}"}}
                    },
                },
            },
        },
    }
    return template, tmp_path


def test_runtime_invokes_with_environment_context_and_a_warm_handler(stub_function, monkeypatch):
    template, base_dir = stub_function
    monkeypatch.delenv("TABLE", raising=False)
    runtime = LambdaRuntime(template, aws_endpoint="http://127.0.0.1:1", base_dir=base_dir)
    try:
        first = runtime.invoke("Fn", {"n": 1})
        second = runtime.invoke("Fn", {"n": 2})
    finally:
        runtime.close()
    assert first["pid"] != os.getpid()  # in a worker process of its own
    assert first["layer"] == "from layer"
    assert first["table"] == "local-Table"
    assert first["endpoint"] == "http://127.0.0.1:1"
    assert first["function_name"] == "Fn"
    assert 0 < first["remaining"] <= 10_000
    assert (second["imports"], second["pid"]) == (1, first["pid"])  # imported once: a warm container
    assert first["request_id"] != second["request_id"]
    assert second["event"] == {"n": 2}
    assert "TABLE" not in os.environ  # the function's environment does not leak


def test_local_stack_serves_the_template_end_to_end(stub_function):
    template, base_dir = stub_function
    with LocalStack(template, api_port=0, aws_port=0, base_dir=base_dir) as stack:
        assert stack.resources == {"Table": "local-Table"}
        response = requests.get(f"{stack.api_url}/things/a%2Fb?x=1", timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["event"]["pathParameters"] == {"id": "a/b"}
        assert body["endpoint"] == stack.aws_endpoint
        # The function's own boto3 calls reach the local moto server.
        assert stack.invoke("Fn", {"list_tables": True}) == ["local-Table"]
