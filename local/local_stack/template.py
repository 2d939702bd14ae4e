"""Read the SAM template and turn it into what the local stack needs.

Only what a local run needs is understood: intrinsic functions are resolved to local
names (no CloudFormation, no random suffixes) so that the same template drives both
the real deployment and the local stack.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

PSEUDO_DEFAULTS = {"stack_name": "local", "region": "us-east-1", "account_id": "123456789012"}

# Tags whose long form is not simply "Fn::<Tag>".
_SPECIAL_TAGS = {"Ref": "Ref", "Condition": "Condition"}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that knows CloudFormation's short-form tags."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # "!GetAtt Res.Attr" splits on the first dot only (attributes may contain dots).
        value = value.split(".", 1)
    key = _SPECIAL_TAGS.get(tag_suffix, f"Fn::{tag_suffix}")
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """Load a CloudFormation/SAM YAML template with short tags turned into the long form.

    A relative path is taken from the repository root, not the current directory.
    """
    path = Path(path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class _NoValue:
    """AWS::NoValue: the property disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass
class LocalNames:
    """Resolves intrinsic functions against local, deterministic names."""

    template: Mapping[str, Any]
    stack_name: str = PSEUDO_DEFAULTS["stack_name"]
    region: str = PSEUDO_DEFAULTS["region"]
    account_id: str = PSEUDO_DEFAULTS["account_id"]
    parameters: Mapping[str, Any] = field(default_factory=dict)  # overrides of parameter defaults

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.template.get("Resources") or {}

    def pseudo(self, name: str) -> Any:
        # Stable across runs so that anything derived from it (e.g. a secret) is too.
        stack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.account_id}/{self.region}/{self.stack_name}")
        values = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/{stack_uuid}"
            ),
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise KeyError(f"unknown pseudo parameter {name}")
        return values[name]

    def parameter(self, name: str) -> Any:
        spec = (self.template.get("Parameters") or {})[name]
        value = self.parameters.get(name, spec.get("Default"))
        if value is None:
            raise KeyError(f"parameter {name} has no Default and no local value")
        value = self.resolve(value)
        ptype = str(spec.get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            if isinstance(value, str):
                return [item.strip() for item in value.split(",")]
            return [str(item) for item in value]
        return str(value) if not isinstance(value, str) else value

    def physical_name(self, logical_id: str) -> str:
        """The name a resource gets locally (what Ref returns for tables and buckets)."""
        resource = self.resources[logical_id]
        rtype = resource.get("Type", "")
        props = resource.get("Properties") or {}
        if rtype == "AWS::DynamoDB::Table":
            if "TableName" in props:
                return str(self.resolve(props["TableName"]))
            return f"{self.stack_name}-{logical_id}"
        if rtype == "AWS::S3::Bucket":
            name = self.resolve(props["BucketName"]) if "BucketName" in props else None
            return _bucket_name(str(name) if name else f"{self.stack_name}-{logical_id}")
        if rtype == "AWS::SQS::Queue":
            if "QueueName" in props:
                return str(self.resolve(props["QueueName"]))
            fifo = _is_true(self.resolve(props.get("FifoQueue")))
            return sqs_queue_name(f"{self.stack_name}-{logical_id}", fifo=fifo)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function") and "FunctionName" in props:
            return str(self.resolve(props["FunctionName"]))
        return logical_id

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in (self.template.get("Parameters") or {}):
            return self.parameter(name)
        if name in self.resources:
            if self.resources[name].get("Type") == "AWS::SQS::Queue":
                return self._queue_url(self.physical_name(name))  # Ref of a queue is its URL
            return self.physical_name(name)
        raise KeyError(f"Ref to unknown name {name}")

    def _queue_url(self, queue_name: str) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{queue_name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources[logical_id]
        rtype = resource.get("Type", "")
        name = self.physical_name(logical_id)
        region, account = self.region, self.account_id
        known: dict[str, dict[str, str]] = {
            "AWS::DynamoDB::Table": {
                "Arn": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
                "StreamArn": f"arn:aws:dynamodb:{region}:{account}:table/{name}/stream/1970-01-01T00:00:00",
            },
            "AWS::S3::Bucket": {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
            },
            "AWS::SQS::Queue": {
                "Arn": f"arn:aws:sqs:{region}:{account}:{name}",
                "QueueName": name,
                "QueueUrl": self._queue_url(name),
            },
            "AWS::Serverless::Function": {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"},
            "AWS::Lambda::Function": {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"},
        }
        if attribute in known.get(rtype, {}):
            return known[rtype][attribute]
        if attribute == "Arn":
            # e.g. AWS::SNS::Topic -> arn:aws:sns:...; good enough for anything that only passes it on.
            service = rtype.split("::")[1].lower() if rtype.count("::") == 2 else "local"
            return f"arn:aws:{service}:{region}:{account}:{name}"
        return f"{name}.{attribute}"

    def condition(self, name: str) -> bool:
        return self.evaluate_condition((self.template.get("Conditions") or {})[name])

    def evaluate_condition(self, expr: Any) -> bool:
        if isinstance(expr, Mapping) and len(expr) == 1:
            ((key, arg),) = expr.items()
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.evaluate_condition(arg[0])
            if key == "Fn::And":
                return all(self.evaluate_condition(v) for v in arg)
            if key == "Fn::Or":
                return any(self.evaluate_condition(v) for v in arg)
        if isinstance(expr, bool):
            return expr
        return bool(self.resolve(expr))

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function in ``value`` (recursively)."""
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key.startswith("Fn::"):
                    return self._intrinsic(key, arg)
            out = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(self.resolve(arg))
        if key == "Fn::GetAtt":
            if isinstance(arg, str):
                arg = arg.split(".", 1)
            logical_id, attribute = (self.resolve(v) for v in arg)
            return self.get_att(logical_id, attribute)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(_text(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            delimiter, text = self.resolve(arg)
            return str(text).split(str(delimiter))
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false)
        if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self.evaluate_condition({key: arg})
        if key == "Fn::FindInMap":
            map_name, top, second = (self.resolve(v) for v in arg[:3])
            return self.resolve(self.template["Mappings"][map_name][top][second])
        if key == "Fn::GetAZs":
            return [f"{self.region}{suffix}" for suffix in "abc"]
        if key == "Fn::Base64":
            return base64.b64encode(_text(self.resolve(arg)).encode()).decode()
        if key == "Fn::ImportValue":
            # Other stacks do not exist locally; a recognisable placeholder beats a crash.
            return f"local-import-{self.resolve(arg)}"
        if key == "Fn::Cidr":
            block, count, bits = self.resolve(arg)
            network = ipaddress.ip_network(str(block), strict=False)
            subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
            return [str(next(subnets)) for _ in range(int(count))]
        if key == "Fn::Length":
            return len(self.resolve(arg))
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise ValueError(f"intrinsic function {key} is not supported locally")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], self.resolve(arg[1]) if len(arg) > 1 else {}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} stays as ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return _text(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # CloudFormation would reject it; a joined list is the useful reading
        return ",".join(_text(v) for v in value)
    return str(value)


def _is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def sqs_queue_name(name: str, fifo: bool = False) -> str:
    # SQS accepts 1-80 letters, digits, hyphens and underscores; FIFO names end in ".fifo".
    suffix = ".fifo" if fifo else ""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name)
    return name[: 80 - len(suffix)] + suffix


def _bucket_name(name: str) -> str:
    # S3 only accepts 3-63 chars of lowercase letters, digits, dots and hyphens.
    name = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    return name[:63].rstrip("-.")


def resolve(
    template: Mapping[str, Any],
    value: Any,
    stack_name: str = PSEUDO_DEFAULTS["stack_name"],
    region: str = PSEUDO_DEFAULTS["region"],
    account_id: str = PSEUDO_DEFAULTS["account_id"],
    parameters: Mapping[str, Any] | None = None,
) -> Any:
    """Resolve intrinsic functions in ``value`` against the local names of ``template``."""
    names = LocalNames(template, stack_name, region, account_id, parameters or {})
    return names.resolve(value)


def resources_of_type(template: Mapping[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in (template.get("Resources") or {}).items() if res.get("Type") in types}


# --- Creating tables and buckets ------------------------------------------------------------------


def table_spec(template: Mapping[str, Any], logical_id: str, **names: Any) -> dict[str, Any]:
    """CreateTable arguments for an AWS::DynamoDB::Table (SSE, PITR, tags are skipped locally)."""
    local = LocalNames(template, **names)
    props = local.resolve(template["Resources"][logical_id].get("Properties") or {})
    billing = props.get("BillingMode", "PROVISIONED")
    spec: dict[str, Any] = {
        "TableName": local.physical_name(logical_id),
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }

    def throughput(source: Mapping[str, Any]) -> dict[str, int]:
        given = source.get("ProvisionedThroughput") or {}
        return {
            "ReadCapacityUnits": int(given.get("ReadCapacityUnits", 5)),
            "WriteCapacityUnits": int(given.get("WriteCapacityUnits", 5)),
        }

    if billing == "PROVISIONED":
        spec["ProvisionedThroughput"] = throughput(props)
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = []
        for index in props.get(key) or []:
            item = {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
            if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                item["ProvisionedThroughput"] = throughput(index)
            indexes.append(item)
        if indexes:
            spec[key] = indexes
    if stream := props.get("StreamSpecification"):
        spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return spec


def s3_cors_rules(cors_configuration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Convert a resolved CloudFormation CorsConfiguration to PutBucketCors' CORSRules."""
    renames = {
        "AllowedOrigins": "AllowedOrigins",
        "AllowedMethods": "AllowedMethods",
        "AllowedHeaders": "AllowedHeaders",
        "ExposedHeaders": "ExposeHeaders",
        "MaxAge": "MaxAgeSeconds",
        "Id": "ID",
    }
    rules = []
    for rule in cors_configuration.get("CorsRules") or []:
        out: dict[str, Any] = {renames[k]: v for k, v in rule.items() if k in renames}
        if "MaxAgeSeconds" in out:
            out["MaxAgeSeconds"] = int(out["MaxAgeSeconds"])
        for key in ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposeHeaders"):
            if isinstance(out.get(key), str):
                out[key] = [out[key]]
        rules.append(out)
    return rules


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# CloudFormation properties of AWS::SQS::Queue that are queue attributes of the same name.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def queue_attributes(props: Mapping[str, Any]) -> dict[str, str]:
    """CreateQueue Attributes from resolved AWS::SQS::Queue properties (the API takes only strings)."""
    attributes = {}
    for key in _QUEUE_ATTRIBUTES:
        if key in props:
            value = props[key]
            attributes[key] = json.dumps(value) if isinstance(value, Mapping) else _text(value)
    return attributes


def create_queues(template: Mapping[str, Any], sqs_client: Any, **names: Any) -> dict[str, str]:
    """Create the template's SQS queues; returns LogicalId -> queue name."""
    local = LocalNames(template, **names)
    created: dict[str, str] = {}
    redrives: dict[str, dict[str, str]] = {}
    for logical_id, resource in resources_of_type(template, "AWS::SQS::Queue").items():
        name = local.physical_name(logical_id)
        attributes = queue_attributes(local.resolve(resource.get("Properties") or {}))
        # Redrive policies name other queues: set once every queue exists.
        redrive = {k: attributes.pop(k) for k in ("RedrivePolicy", "RedriveAllowPolicy") if k in attributes}
        try:
            url = sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as error:
            if _error_code(error) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
        if redrive:
            redrives[url] = redrive
        created[logical_id] = name
    for url, attributes in redrives.items():
        sqs_client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return created


def create_resources(
    template: Mapping[str, Any],
    dynamodb_client: Any,
    s3_client: Any,
    sqs_client: Any = None,
    **names: Any,
) -> dict[str, str]:
    """Create the template's DynamoDB tables, S3 buckets and (given ``sqs_client``) SQS queues.

    Existing ones are left as they are. Returns LogicalId -> physical name (a queue's name, not its
    URL). ``names`` are LocalNames' stack_name/region/account_id/parameters.
    """
    local = LocalNames(template, **names)
    created: dict[str, str] = {}
    for logical_id in resources_of_type(template, "AWS::DynamoDB::Table"):
        spec = table_spec(template, logical_id, **names)
        try:
            dynamodb_client.create_table(**spec)
        except ClientError as error:
            if _error_code(error) != "ResourceInUseException":
                raise
        props = local.resolve(template["Resources"][logical_id].get("Properties") or {})
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb_client.update_time_to_live(
                TableName=spec["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        created[logical_id] = spec["TableName"]

    for logical_id, resource in resources_of_type(template, "AWS::S3::Bucket").items():
        bucket = local.physical_name(logical_id)
        # The call has to match the client's region: us-east-1 takes no LocationConstraint.
        client_region = s3_client.meta.region_name or "us-east-1"
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if client_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": client_region}
        try:
            s3_client.create_bucket(**kwargs)
        except ClientError as error:
            if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        props = local.resolve(resource.get("Properties") or {})
        if rules := s3_cors_rules(props.get("CorsConfiguration") or {}):
            s3_client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
        if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        created[logical_id] = bucket

    if sqs_client is not None:
        created.update(create_queues(template, sqs_client, **names))
    return created


# --- Functions, routes, CORS ----------------------------------------------------------------------

FUNCTION_TYPES = ("AWS::Serverless::Function",)


@dataclass(frozen=True)
class FunctionInfo:
    logical_id: str
    code_uri: str  # directory relative to the template (the repo root), e.g. "functions/api"
    handler: str  # "package.module.function"
    runtime: str
    layers: tuple[str, ...]  # layer content directories, relative like code_uri
    timeout: int
    memory_size: int
    properties: Mapping[str, Any]  # merged with Globals.Function, unresolved


def _merge_globals(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    # SAM's rules: maps are merged, lists are concatenated (globals first), scalars are overridden.
    merged = dict(global_props)
    for key, value in props.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping) and not _is_intrinsic(value):
            merged[key] = _merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    if len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    global_props = (template.get("Globals") or {}).get("Function") or {}
    return _merge_globals(global_props, template["Resources"][logical_id].get("Properties") or {})


def _relative_dir(uri: Any) -> str:
    if not isinstance(uri, str):
        raise ValueError(f"only local CodeUri/ContentUri directories are supported, got {uri!r}")
    return uri.strip().rstrip("/") or "."


def _layer_dirs(template: Mapping[str, Any], layers: list[Any]) -> tuple[str, ...]:
    dirs = []
    for layer in layers:
        # Only layers built from this template have code here; ARNs of foreign layers are skipped.
        if isinstance(layer, Mapping) and "Ref" in layer:
            resource = template["Resources"].get(layer["Ref"]) or {}
            uri = (resource.get("Properties") or {}).get("ContentUri")
            if uri is not None:
                dirs.append(_relative_dir(uri))
    return tuple(dirs)


def functions(template: Mapping[str, Any]) -> dict[str, FunctionInfo]:
    """Every AWS::Serverless::Function, with Globals.Function merged in."""
    out = {}
    for logical_id in resources_of_type(template, *FUNCTION_TYPES):
        props = function_properties(template, logical_id)
        out[logical_id] = FunctionInfo(
            logical_id=logical_id,
            code_uri=_relative_dir(props.get("CodeUri", ".")),
            handler=str(props["Handler"]),
            runtime=str(props.get("Runtime", "")),
            layers=_layer_dirs(template, props.get("Layers") or []),
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            properties=props,
        )
    return out


def function_environment(template: Mapping[str, Any], logical_id: str, **names: Any) -> dict[str, str]:
    """The function's environment variables (Globals merged), resolved to local names, as strings."""
    props = function_properties(template, logical_id)
    variables = (props.get("Environment") or {}).get("Variables") or {}
    resolved = LocalNames(template, **names).resolve(variables)
    return {key: _text(value) for key, value in resolved.items()}


def function_events(template: Mapping[str, Any], *types: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function logical id, event id, event) for every event of the given Types of every function."""
    for function_id, resource in resources_of_type(template, *FUNCTION_TYPES).items():
        for event_id, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") in types:
                yield function_id, event_id, event


def http_routes(template: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(METHOD, path template, function logical id) for every HttpApi event.

    An event without Path and Method is the API's catch-all route: ("ANY", "$default", id).
    """
    routes = []
    for logical_id, _, event in function_events(template, "HttpApi"):
        props = event.get("Properties") or {}
        if "Path" not in props and "Method" not in props:
            routes.append(("ANY", "$default", logical_id))
            continue
        method = str(props.get("Method", "ANY")).upper()
        any_method = method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD")
        routes.append(("ANY" if any_method else method, props["Path"], logical_id))
    return routes


def _http_api_properties(template: Mapping[str, Any], api_id: str | None) -> dict[str, Any]:
    """The HTTP API's properties with Globals.HttpApi merged in (the first API when ``api_id`` is None)."""
    apis = resources_of_type(template, "AWS::Serverless::HttpApi")
    global_props = (template.get("Globals") or {}).get("HttpApi") or {}
    if api_id or apis:
        return _merge_globals(global_props, apis[api_id or next(iter(apis))].get("Properties") or {})
    return dict(global_props)


def cors_configuration(
    template: Mapping[str, Any], api_id: str | None = None, **names: Any
) -> dict[str, Any] | None:
    """The HTTP API's CorsConfiguration (Globals.HttpApi merged), resolved; None without CORS.

    ``CorsConfiguration: true`` means every origin, as in SAM.
    """
    props = _http_api_properties(template, api_id)
    cors = LocalNames(template, **names).resolve(props.get("CorsConfiguration"))
    if cors is None or cors is False:
        return None
    if cors is True:
        return {"AllowOrigins": ["*"]}
    for key in ("AllowOrigins", "AllowMethods", "AllowHeaders", "ExposeHeaders"):
        if isinstance(cors.get(key), str):
            cors[key] = [cors[key]]
    return cors


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def route_security(
    template: Mapping[str, Any], api_id: str | None = None, **names: Any
) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Route key ("POST /path") -> (its x-amazon-apigateway-authorizer, its authorization scopes).

    Read from the operations of the HTTP API's DefinitionBody, resolved (so conditions on
    ``security`` apply), whose ``security`` names a scheme of ``components.securitySchemes``; the
    scopes are those the requirement lists. Routes without ``security`` are public.
    """
    body = LocalNames(template, **names).resolve(_http_api_properties(template, api_id).get("DefinitionBody"))
    if not isinstance(body, Mapping):
        return {}
    schemes = (body.get("components") or {}).get("securitySchemes") or {}
    secured: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for path, operations in (body.get("paths") or {}).items():
        for method, operation in operations.items():
            method = "ANY" if method == "x-amazon-apigateway-any-method" else method
            if method != "ANY" and method not in _HTTP_METHODS:
                continue  # "parameters", "summary"... of the path item
            for requirement in operation.get("security") or []:
                for scheme, scopes in requirement.items():
                    authorizer = (schemes.get(scheme) or {}).get("x-amazon-apigateway-authorizer")
                    if authorizer is None:
                        raise ValueError(f"{method.upper()} {path}: the scheme {scheme} has no authorizer")
                    secured[f"{method.upper()} {path}"] = (authorizer, list(scopes or []))
    return secured
