"""template.yaml read for the local stack, resolved to local names (no CloudFormation, no random suffixes).

Only what this project's template uses is understood; ``unsupported()`` names anything else, and the stack
refuses to start on it rather than half-emulate it. The SAM template is read as written (Globals merged
by SAM's rules, events read from the functions) rather than through aws-sam-translator's transform, which
wants S3 CodeUris, renames the layers, and leaves every intrinsic still to resolve.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
PSEUDO_DEFAULTS = {"stack_name": "local", "region": "us-east-1", "account_id": "123456789012"}
NO_VALUE = object()  # AWS::NoValue: the property disappears

# What the local stack emulates (Rules are not evaluated locally, whatever they use).
INTRINSICS = {"Ref", "Condition", "Fn::GetAtt", "Fn::Sub", "Fn::If", "Fn::Equals", "Fn::Not"}
EVENT_PROPERTIES = {
    "HttpApi": {"ApiId", "Method", "Path"},
    "S3": {"Bucket", "Events", "Filter"},
    "Schedule": {"Schedule", "Description", "RetryPolicy", "DeadLetterConfig"},
}
UNSUPPORTED_PROPERTIES = {
    "AWS::Serverless::Function": {
        "FunctionName",
        "InlineCode",
        "ImageUri",
        "DeadLetterQueue",
        "AutoPublishAlias",
    },
    "AWS::DynamoDB::Table": {
        "TableName",
        "ProvisionedThroughput",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "TimeToLiveSpecification",
    },
    "AWS::SQS::Queue": {"QueueName", "FifoQueue", "RedrivePolicy", "RedriveAllowPolicy"},
}


def load_template(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The YAML template in its long form (SAM CLI's reader); a relative path is from the repository root."""
    # Imported when used (here and below): a function's worker imports this module, not these.
    from samcli.yamlhelper import yaml_parse

    return yaml_parse((REPO_ROOT / path).read_text(encoding="utf-8"))


def resources_of_type(template: Mapping[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in (template.get("Resources") or {}).items() if res.get("Type") in types}


def _intrinsics(value: Any) -> Iterator[str]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if str(key).startswith("Fn::"):
            yield key
        yield from _intrinsics(item)


def unsupported(template: Mapping[str, Any]) -> list[str]:
    """What the template uses that the local stack does not emulate, one line each."""
    found = sorted(set(_intrinsics({k: v for k, v in template.items() if k != "Rules"})) - INTRINSICS)
    found += [f"Globals.{name}" for name in set(template.get("Globals") or {}) - {"Function"}]
    if len(resources_of_type(template, "AWS::Serverless::HttpApi")) > 1:
        found.append("a second AWS::Serverless::HttpApi")
    for logical_id, resource in (template.get("Resources") or {}).items():
        props = resource.get("Properties") or {}
        refused = set(props).intersection(UNSUPPORTED_PROPERTIES.get(resource["Type"], ()))
        found += [f"{logical_id}.{name}" for name in sorted(refused)]
        for event_id, event in (props.get("Events") or {}).items():
            where, given = f"{logical_id}.Events.{event_id}", event.get("Properties") or {}
            if event["Type"] not in EVENT_PROPERTIES:
                found.append(f"{where}: an event of Type {event['Type']}")
                continue
            found += [f"{where}.{name}" for name in set(given) - EVENT_PROPERTIES[event["Type"]]]
            method, path = str(given.get("Method", "ANY")).upper(), str(given.get("Path", "+}"))
            if event["Type"] == "HttpApi" and (method == "ANY" or "+}" in path):
                found.append(f"{where}: a catch-all route (ANY, {{proxy+}}, $default)")
        if resource["Type"] == "AWS::Serverless::Function":
            invoke_config = function_properties(template, logical_id).get("EventInvokeConfig") or {}
            destinations = invoke_config.get("DestinationConfig") or {}
            on_failure = destinations.get("OnFailure", {}).get("Type", "SQS")
            if set(destinations) - {"OnFailure"} or on_failure != "SQS":
                found.append(f"{logical_id}.EventInvokeConfig: a destination other than OnFailure to SQS")
    return [f"{problem} is not supported by the local stack" for problem in found]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(map(_text, value)) if isinstance(value, list) else str(value)


@dataclass
class Names:
    """Resolves intrinsic functions against the local stack's names."""

    template: Mapping[str, Any]
    stack_name: str = PSEUDO_DEFAULTS["stack_name"]
    region: str = PSEUDO_DEFAULTS["region"]
    account_id: str = PSEUDO_DEFAULTS["account_id"]
    parameters: Mapping[str, Any] = field(default_factory=dict)  # overrides of the parameters' defaults

    def physical_name(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        if resource["Type"] == "AWS::S3::Bucket":
            name = self.resolve((resource.get("Properties") or {}).get("BucketName"))
            return (name or f"{self.stack_name}-{logical_id}").lower()  # S3 takes lower case only
        if resource["Type"] in ("AWS::DynamoDB::Table", "AWS::SQS::Queue"):
            return f"{self.stack_name}-{logical_id}"
        return logical_id

    def ref(self, name: str) -> Any:
        stack, region, account = self.stack_name, self.region, self.account_id
        if name.startswith("AWS::"):
            # A stable StackId, so that what derives from it (CURSOR_SECRET) is too.
            stack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{region}/{stack}")
            return {
                "AWS::StackName": stack,
                "AWS::Region": region,
                "AWS::AccountId": account,
                "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack}/{stack_uuid}",
                "AWS::Partition": "aws",
                "AWS::NoValue": NO_VALUE,
            }[name]
        if spec := (self.template.get("Parameters") or {}).get(name):
            value = self.parameters.get(name, spec.get("Default"))
            if value is None:
                raise ValueError(f"parameter {name} has no Default and no local value")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                return [item.strip() for item in value.split(",")]
            return value if isinstance(value, list) else str(value)
        if self.template["Resources"][name]["Type"] == "AWS::SQS::Queue":  # a queue's Ref is its URL
            return f"https://sqs.{region}.amazonaws.com/{account}/{self.physical_name(name)}"
        return self.physical_name(name)

    def arn(self, logical_id: str) -> str:
        name, region, account = self.physical_name(logical_id), self.region, self.account_id
        service = self.template["Resources"][logical_id]["Type"].split("::")[1].lower()
        return {
            "s3": f"arn:aws:s3:::{name}",
            "dynamodb": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "serverless": f"arn:aws:lambda:{region}:{account}:function:{name}",
        }.get(service, f"arn:aws:{service}:{region}:{account}:{name}")

    def environment(self, function_id: str) -> dict[str, str]:
        variables = (function_properties(self.template, function_id).get("Environment") or {}).get(
            "Variables"
        )
        return {key: _text(value) for key, value in self.resolve(variables or {}).items()}

    def condition(self, expression: Any) -> bool:
        if isinstance(expression, str):  # a condition's name
            expression = self.template["Conditions"][expression]
        ((key, arg),) = expression.items()
        if key == "Fn::Equals":
            return _text(self.resolve(arg[0])) == _text(self.resolve(arg[1]))
        if key == "Fn::Not":
            return not self.condition(arg[0])
        if key == "Condition":
            return self.condition(arg)
        raise ValueError(f"{key} is not supported by the local stack")

    def resolve(self, value: Any) -> Any:
        """``value`` with its intrinsic functions resolved (AWS::NoValue properties left out)."""
        if isinstance(value, Mapping):
            key = next(iter(value), "")
            if len(value) == 1 and (key in INTRINSICS or key.startswith("Fn::")):
                return self._intrinsic(key, value[key])
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(arg)
        if key == "Fn::If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Fn::GetAtt" and arg[1] == "Arn":
            return self.arn(arg[0])
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

            def value(match: re.Match[str]) -> str:
                name = match[1]
                if name in variables:
                    return _text(variables[name])
                return self.arn(name.removesuffix(".Arn")) if name.endswith(".Arn") else _text(self.ref(name))

            return re.sub(r"\$\{([^}]+)\}", value, text)
        if key == "Fn::GetAtt":
            raise ValueError(f"Fn::GetAtt {'.'.join(arg)} is not supported by the local stack")
        return self.condition({key: arg})  # Fn::Equals, Fn::Not, Condition; refuses the others


@dataclass(frozen=True)
class FunctionInfo:
    logical_id: str
    code_uri: str  # a directory relative to the template's, e.g. "functions/api"
    handler: str  # "package.module.function"
    runtime: str
    layers: Mapping[str, str]  # its layers' logical ids -> their content directories, relative like code_uri
    timeout: int
    memory_size: int
    properties: Mapping[str, Any]  # merged with Globals.Function, unresolved


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    from samtranslator.plugins.globals.globals import GlobalProperties

    # SAM's own rules: maps are merged, lists add up (globals first), anything else is replaced.
    global_props = GlobalProperties((template.get("Globals") or {}).get("Function") or {})
    return global_props.merge(template["Resources"][logical_id].get("Properties") or {})


def functions(template: Mapping[str, Any]) -> dict[str, FunctionInfo]:
    """Every AWS::Serverless::Function, with Globals.Function merged in."""
    out, resources = {}, template["Resources"]
    for logical_id in resources_of_type(template, "AWS::Serverless::Function"):
        props = function_properties(template, logical_id)
        # Only this template's layers have their code here.
        layers = [layer["Ref"] for layer in props.get("Layers") or [] if "Ref" in layer]
        content = {lid: resources[lid]["Properties"]["ContentUri"].rstrip("/") for lid in layers}
        out[logical_id] = FunctionInfo(
            logical_id=logical_id,
            code_uri=str(props.get("CodeUri", ".")).rstrip("/"),
            handler=str(props["Handler"]),
            runtime=str(props.get("Runtime", "")),
            layers=content,
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            properties=props,
        )
    return out


def function_environment(template: Mapping[str, Any], logical_id: str, **names: Any) -> dict[str, str]:
    """The function's environment variables (Globals merged), resolved, as strings.

    ``names``: the stack_name, region, account_id and parameters of ``Names``.
    """
    return Names(template, **names).environment(logical_id)


def function_events(
    template: Mapping[str, Any], event_type: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function id, event id, its unresolved Properties) for every event of that Type."""
    for function_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        for event_id, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event["Type"] == event_type:
                yield function_id, event_id, event.get("Properties") or {}


def _create(call: Any, exists: str, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] != exists:
            raise


def create_resources(
    names: Names, dynamodb_client: Any, s3_client: Any, sqs_client: Any = None
) -> dict[str, str]:
    """Create the template's tables, buckets and (given ``sqs_client``) queues; existing ones stay.

    Returns LogicalId -> physical name. Encryption, backups, logging and lifecycle rules are left out.
    """
    created = {}
    for logical_id, resource in (names.template.get("Resources") or {}).items():
        rtype, name = resource["Type"], names.physical_name(logical_id)
        if rtype not in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue" if sqs_client else ""):
            continue
        props = names.resolve(resource.get("Properties") or {})
        if rtype == "AWS::DynamoDB::Table":
            keys = ("IndexName", "KeySchema", "Projection")
            indexes = [{k: index[k] for k in keys} for index in props.get("GlobalSecondaryIndexes", [])]
            _create(
                dynamodb_client.create_table,
                "ResourceInUseException",
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                BillingMode="PAY_PER_REQUEST",
                **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
            )
        elif rtype == "AWS::S3::Bucket":
            region = s3_client.meta.region_name  # us-east-1 takes no LocationConstraint
            where = (
                {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            _create(s3_client.create_bucket, "BucketAlreadyOwnedByYou", Bucket=name, **where)
            # CloudFormation's CORS rules, in PutBucketCors' words.
            renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
            rules = [
                {renamed.get(k, k): int(v) if k == "MaxAge" else v for k, v in rule.items()}
                for rule in (props.get("CorsConfiguration") or {}).get("CorsRules", [])
            ]
            if rules:
                s3_client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
            if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        else:
            attributes = {
                k: str(props[k]) for k in ("MessageRetentionPeriod", "VisibilityTimeout") if k in props
            }
            _create(sqs_client.create_queue, "QueueAlreadyExists", QueueName=name, Attributes=attributes)
        created[logical_id] = name
    return created
