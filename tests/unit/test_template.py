"""Rules of template.yaml that no linter knows about."""

PUBLIC = {"/openapi.json", "/docs", "/limits"}


def test_every_data_route_is_behind_the_optional_jwt_authorizer(template):
    # SAM cannot make `Auth` conditional, so each route carries a conditional `security` in the
    # API's DefinitionBody: a route event added without it would stay public with JWT on.
    api = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"].lower()) for e in events if e["Type"] == "HttpApi"
    }
    for path, method in routes - {(p, "get") for p in PUBLIC}:
        assert "security" in api.get(path, {}).get(method, {}), f"{method.upper()} {path} is not protected"


def test_functions_run_on_arm64_python_313_with_tracing(template):
    from local_stack.template import functions

    for info in functions(template).values():
        props = info.properties
        assert info.runtime == "python3.13"
        assert props["Architectures"] == ["arm64"]
        assert props["Tracing"] == "Active"


def _allowed_actions(template) -> dict[str, set[str]]:
    roles = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        actions = set()
        for policy in resource["Properties"].get("Policies", []):
            if "Fn::If" in policy:  # a conditional policy (KMS): check the branch that grants
                policy = policy["Fn::If"][1]
            document = policy["PolicyDocument"]
            statements = document if isinstance(document, list) else document.get("Statement", [])
            for statement in statements:
                if isinstance(statement, dict) and statement.get("Effect") == "Allow":
                    action = statement["Action"]
                    actions |= {action} if isinstance(action, str) else set(action)
        roles[name] = actions
    return roles


def test_roles_allow_no_wildcard_action_and_the_api_cannot_delete_the_table(template):
    roles = _allowed_actions(template)
    assert len(roles) >= 3
    for name, actions in roles.items():
        wildcards = {a for a in actions if a == "*" or a.endswith(":*")}
        assert not wildcards, f"{name} allows {wildcards}"
        assert "dynamodb:DeleteTable" not in actions
        assert "dynamodb:Scan" not in actions
        assert not resource_managed_policies(template, name)


def resource_managed_policies(template, role: str) -> list:
    return template["Resources"][role]["Properties"].get("ManagedPolicyArns", [])


def test_failed_events_errors_and_throttles_have_alarms(template):
    alarms = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    watched = {(a["Namespace"], a["MetricName"], str(a["Dimensions"][0]["Value"])) for a in alarms}
    assert (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "{'Fn::GetAtt': ['ProcessUploadFailures', 'QueueName']}",
    ) in watched
    for function in ("ApiFunction", "ProcessUploadFunction", "CleanupFunction"):
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, f"{{'Ref': '{function}'}}") in watched


def test_the_images_bucket_is_always_versioned(template):
    # Every deletion names an object version: without versioning a later PUT would replace verified bytes.
    bucket = template["Resources"]["ImagesBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}


def test_jwt_is_the_default_and_cannot_be_deployed_without_an_issuer_and_an_audience(template):
    assert template["Parameters"]["AuthMode"]["Default"] == "jwt"
    (rule,) = template["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "jwt"]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]} in asserted
    assert {"Fn::Not": [{"Fn::EachMemberIn": [{"Ref": "JwtAudience"}, [""]]}]} in asserted
