"""Roles and STS in the emulator: deletion order, trust evaluation, session
credentials (strict_sts.py), against the real server process through boto3.

"$(scripts/emulator.sh python)" -m pytest -q tools/iam-emulator/test_strict_sts.py
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from test_strict_iam import ACCOUNT, ALLOW_ALL, Emulator, error_of, server_argv

# No client-side validation: the emulator's own answers are under test.
RAW = Config(retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False)


def trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def role_arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:role{path}{name}"


class World:
    """An emulator enforcing authentication, with user `op` (allowed everything)
    signing every request."""

    def __init__(self) -> None:
        self.emu = Emulator(server_argv(), env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        anon = self.emu.client()
        anon.create_user(UserName="op")
        anon.put_user_policy(UserName="op", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = anon.create_access_key(UserName="op")["AccessKey"]
        self.creds = (key["AccessKeyId"], key["SecretAccessKey"], None)
        self.iam = self.client("iam", self.creds)
        self.sts = self.client("sts", self.creds)

    def client(self, service: str, creds: tuple[str, str, str | None]) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.emu.url,
            region_name="us-east-1",
            aws_access_key_id=creds[0],
            aws_secret_access_key=creds[1],
            aws_session_token=creds[2],
            config=RAW,
        )

    def role(self, name: str, document: str, **kwargs: Any) -> str:
        return self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=document, **kwargs)[
            "Role"
        ]["Arn"]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    yield w
    w.emu.stop()


def session_creds(out: dict[str, Any]) -> tuple[str, str, str]:
    c = out["Credentials"]
    return c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]


def denied(world: World, arn: str, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        world.sts.assume_role(RoleArn=arn, RoleSessionName="test-session", **kwargs)
    code, status, message = error_of(exc)
    assert (code, status) == ("AccessDenied", 403), message
    assert message == (
        f"User: {user_arn('op')} is not authorized to perform: sts:AssumeRole on resource: {arn}"
    )
    return message


# ---------------------------------------------------------------- deletion


def test_delete_role_refused_while_policies_or_instance_profile_remain(world: World) -> None:
    iam = world.iam
    policy = iam.create_policy(PolicyName="del-p", PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
    boundary = iam.create_policy(PolicyName="del-b", PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
    world.role("del", trust(allow({"Service": "ec2.amazonaws.com"})), PermissionsBoundary=boundary)
    iam.attach_role_policy(RoleName="del", PolicyArn=policy)
    iam.put_role_policy(RoleName="del", PolicyName="inline", PolicyDocument=ALLOW_ALL)
    iam.create_instance_profile(InstanceProfileName="del")
    iam.add_role_to_instance_profile(InstanceProfileName="del", RoleName="del")

    def refused(call: Any, message: str, **kwargs: Any) -> None:
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert error_of(exc) == ("DeleteConflict", 409, message)

    # IAM's order: instance profiles, attached policies, inline policies, then the role.
    refused(iam.delete_role, "Cannot delete entity, must remove roles from instance profile first.", RoleName="del")
    refused(
        iam.delete_instance_profile,
        "Cannot delete entity, must remove roles from instance profile first.",
        InstanceProfileName="del",
    )
    iam.remove_role_from_instance_profile(InstanceProfileName="del", RoleName="del")
    iam.delete_instance_profile(InstanceProfileName="del")
    refused(iam.delete_role, "Cannot delete entity, must detach all policies first.", RoleName="del")
    iam.detach_role_policy(RoleName="del", PolicyArn=policy)
    refused(iam.delete_role, "Cannot delete entity, must delete policies first.", RoleName="del")
    iam.delete_role_policy(RoleName="del", PolicyName="inline")
    # A permissions boundary does not block DeleteRole (IAM's DeleteRole lists only
    # instance profiles, attached and inline policies); the boundary policy is then free.
    iam.delete_role(RoleName="del")
    iam.delete_policy(PolicyArn=boundary)
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName="del")
    assert error_of(exc)[0] == "NoSuchEntity"


# ---------------------------------------------------------------- CreateRole / UpdateRole


def test_max_session_duration_must_be_between_one_and_twelve_hours(world: World) -> None:
    doc = trust(allow({"AWS": user_arn("op")}))
    for value, bound in [(3599, "greater than or equal to 3600"), (43201, "less than or equal to 43200")]:
        with pytest.raises(ClientError) as exc:
            world.role(f"msd-{value}", doc, MaxSessionDuration=value)
        code, status, message = error_of(exc)
        assert (code, status) == ("ValidationError", 400)
        assert f"Value '{value}' at 'maxSessionDuration'" in message and bound in message
    world.role("msd-ok", doc, MaxSessionDuration=43200)
    with pytest.raises(ClientError) as exc:
        world.iam.update_role(RoleName="msd-ok", MaxSessionDuration=100)
    assert error_of(exc)[0] == "ValidationError"
    assert world.iam.get_role(RoleName="msd-ok")["Role"]["MaxSessionDuration"] == 43200


def test_malformed_trust_principals_are_refused(world: World) -> None:
    bad = [
        {"AWS": "garbage"},
        {"AWS": ["123456789012", "arn:aws:iam::12345:root"]},
        {"AWS": "arn:aws:iam::123456789012:group/admins"},
        {"Service": "not a service"},
        {"Federated": "arn:aws:iam::123456789012:user/x"},
        {"Someone": "x"},
        "everyone",
    ]
    for i, principal in enumerate(bad):
        with pytest.raises(ClientError) as exc:
            world.role(f"bad-{i}", trust(allow(principal)))
        code, _, message = error_of(exc)
        assert code == "MalformedPolicyDocument", (principal, message)
        assert message.startswith("Invalid principal in policy"), message
    good = [
        "*",
        {"AWS": "*"},
        {"AWS": [ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", user_arn("op"), role_arn("x", "/a/b/")]},
        {"AWS": f"arn:aws:sts::{ACCOUNT}:assumed-role/x/session"},
        {"Service": ["ec2.amazonaws.com", "pods.eks.amazonaws.com"]},
        {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"},
    ]
    for i, principal in enumerate(good):
        world.role(f"good-{i}", trust(allow(principal)))
    with pytest.raises(ClientError) as exc:
        world.iam.update_assume_role_policy(RoleName="good-0", PolicyDocument=trust(allow({"AWS": "nope"})))
    assert error_of(exc)[0] == "MalformedPolicyDocument"


# ---------------------------------------------------------------- AssumeRole


def test_assumed_credentials_sign_as_the_assumed_role(world: World) -> None:
    arn = world.role("sess", trust(allow({"AWS": user_arn("op")})), Path="/team/", MaxSessionDuration=7200)
    before = datetime.datetime.now(datetime.timezone.utc)
    out = world.sts.assume_role(RoleArn=arn, RoleSessionName="ns.app", DurationSeconds=5400)
    key_id, secret, token = session_creds(out)
    assert key_id.startswith("ASIA") and secret and token
    expires = out["Credentials"]["Expiration"]
    assert abs((expires - before).total_seconds() - 5400) < 30, expires
    assumed = f"arn:aws:sts::{ACCOUNT}:assumed-role/sess/ns.app"
    assert out["AssumedRoleUser"]["Arn"] == assumed
    ident = world.client("sts", (key_id, secret, token)).get_caller_identity()
    assert ident["Arn"] == assumed
    assert ident["UserId"].endswith(":ns.app")
    # Without the token, or with another one, the key is not accepted.
    for wrong in [None, "not-the-token"]:
        with pytest.raises(ClientError) as exc:
            world.client("sts", (key_id, secret, wrong)).get_caller_identity()
        assert error_of(exc)[0] == "InvalidClientTokenId"
    # Expired: STS's ExpiredToken.
    assert world.emu.control("POST", "/_emulator/age-session", {"accessKeyId": key_id, "seconds": 5401})[0] == 200
    with pytest.raises(ClientError) as exc:
        world.client("sts", (key_id, secret, token)).get_caller_identity()
    assert error_of(exc)[:2] == ("ExpiredToken", 403)
    assert world.emu.control("POST", "/_emulator/age-session", {"accessKeyId": "ASIANOPE", "seconds": 1})[0] == 404


def test_trust_names_the_caller_exactly_or_its_account(world: World) -> None:
    # moto matched a principal string as a substring: user/op inside user/opx.
    denied(world, world.role("t-other", trust(allow({"AWS": user_arn("opx")}))))
    denied(world, world.role("t-list", trust(allow({"AWS": [user_arn("opx"), user_arn("o")]}))))
    for i, principal in enumerate([ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", "*", [user_arn("x"), user_arn("op")]]):
        arn = world.role(f"t-ok-{i}", trust(allow({"AWS": principal})))
        world.sts.assume_role(RoleArn=arn, RoleSessionName="s1")
    # Another account's root is not this caller.
    denied(world, world.role("t-acct", trust(allow({"AWS": "210987654321"}))))
    # Statements for other principals do not deny (moto denied, or crashed on Service).
    arn = world.role(
        "t-mixed",
        trust(
            allow({"Service": "ec2.amazonaws.com"}),
            allow({"AWS": user_arn("someone")}),
            allow({"AWS": user_arn("op")}),
        ),
    )
    world.sts.assume_role(RoleArn=arn, RoleSessionName="s1")
    # A Deny for the caller wins over an Allow.
    denied(
        world,
        world.role(
            "t-deny",
            trust(allow({"AWS": ACCOUNT}), {"Effect": "Deny", "Principal": {"AWS": user_arn("op")}, "Action": "sts:AssumeRole"}),
        ),
    )
    # Only sts:AssumeRole statements count.
    denied(
        world,
        world.role("t-action", trust({"Effect": "Allow", "Principal": {"AWS": user_arn("op")}, "Action": "sts:TagSession"})),
    )
    # A role that does not exist: the same AccessDenied (STS does not say which).
    denied(world, role_arn("no-such-role"))


def test_external_id_and_mfa_conditions(world: World) -> None:
    arn = world.role(
        "t-ext",
        trust(allow({"AWS": user_arn("op")}, Condition={"StringEquals": {"sts:ExternalId": "xid-1"}})),
    )
    denied(world, arn)
    denied(world, arn, ExternalId="xid-2")
    world.sts.assume_role(RoleArn=arn, RoleSessionName="s1", ExternalId="xid-1")
    # Access keys are never MFA-authenticated.
    mfa = world.role("t-mfa", trust(allow({"AWS": user_arn("op")}, Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})))
    denied(world, mfa)


def test_identity_policy_must_allow_assume_role_too(world: World) -> None:
    world.iam.create_user(UserName="weak")
    world.iam.put_user_policy(
        UserName="weak",
        PolicyName="no-sts",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}),
    )
    key = world.iam.create_access_key(UserName="weak")["AccessKey"]
    arn = world.role("t-weak", trust(allow({"AWS": ACCOUNT})))
    weak = world.client("sts", (key["AccessKeyId"], key["SecretAccessKey"], None))
    with pytest.raises(ClientError) as exc:
        weak.assume_role(RoleArn=arn, RoleSessionName="s1")
    assert error_of(exc)[0] == "AccessDenied"


def test_duration_and_session_name_are_validated(world: World) -> None:
    arn = world.role("t-dur", trust(allow({"AWS": user_arn("op")})))  # MaxSessionDuration 3600

    def invalid(message_part: str, **kwargs: Any) -> None:
        with pytest.raises(ClientError) as exc:
            world.sts.assume_role(RoleArn=arn, **{"RoleSessionName": "s1", **kwargs})
        code, status, message = error_of(exc)
        assert (code, status) == ("ValidationError", 400), message
        assert message_part in message, message

    invalid("exceeds the MaxSessionDuration set for this role", DurationSeconds=3601)
    invalid("greater than or equal to 900", DurationSeconds=899)
    invalid("less than or equal to 43200", DurationSeconds=43201)
    invalid("roleSessionName", RoleSessionName="has space")
    invalid("roleSessionName", RoleSessionName="x")
    invalid("roleSessionName", RoleSessionName="n" * 65)
    out = world.sts.assume_role(RoleArn=arn, RoleSessionName="Ok_+=,.@-", DurationSeconds=900)
    assert out["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_role_chaining_sessions_are_trusted_by_role_arn_and_capped_at_an_hour(world: World) -> None:
    first = world.role("chain-a", trust(allow({"AWS": user_arn("op")})), Path="/p/", MaxSessionDuration=43200)
    world.iam.put_role_policy(RoleName="chain-a", PolicyName="all", PolicyDocument=ALLOW_ALL)
    second = world.role(
        "chain-b", trust(allow({"AWS": role_arn("chain-a", "/p/")})), MaxSessionDuration=43200
    )
    session = world.client("sts", session_creds(world.sts.assume_role(RoleArn=first, RoleSessionName="hop1")))
    with pytest.raises(ClientError) as exc:
        session.assume_role(RoleArn=second, RoleSessionName="hop2", DurationSeconds=7200)
    assert error_of(exc)[0] == "ValidationError"
    assert "1 hour session limit for roles assumed by role chaining" in error_of(exc)[2]
    out = session.assume_role(RoleArn=second, RoleSessionName="hop2", DurationSeconds=3600)
    ident = world.client("sts", session_creds(out)).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/chain-b/hop2"
    # A role trusting another role's ARN does not trust an unrelated session.
    other = world.role("chain-c", trust(allow({"AWS": role_arn("chain-x")})))
    with pytest.raises(ClientError) as exc:
        session.assume_role(RoleArn=other, RoleSessionName="hop2")
    assert error_of(exc)[2] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/chain-a/hop1 is not authorized to perform: "
        f"sts:AssumeRole on resource: {other}"
    )


def test_an_unknown_caller_without_authentication_has_an_iam_arn_a_trust_can_name() -> None:
    emu = Emulator(server_argv())
    try:
        ident = emu.client("sts").get_caller_identity()
        assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/moto"
        # Such a trust is accepted, and without authentication anyone may assume the role.
        iam = emu.client()
        arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust(allow({"AWS": ident["Arn"]})))["Role"]["Arn"]
        assert emu.client("sts").assume_role(RoleArn=arn, RoleSessionName="s1")["Credentials"]["AccessKeyId"]
    finally:
        emu.stop()


def test_a_signature_over_a_space_encoded_as_percent_20_is_accepted(world: World) -> None:
    """SDKs other than botocore (the Rust SDK among them) encode a space as `%20` in a form
    body and sign those bytes; AWS checks the signature over the bytes sent."""
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = (
        "Action=CreateRole&Version=2010-05-08&RoleName=spaced"
        "&Description=a%20role%20with%20spaces&AssumeRolePolicyDocument="
        + urllib.parse.quote(trust(allow({"AWS": user_arn("op")})), safe="")
    )
    request = AWSRequest(
        method="POST",
        url=world.emu.url + "/",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(world.creds[0], world.creds[1]), "iam", "us-east-1").add_auth(request)
    sent = urllib.request.Request(
        world.emu.url + "/", data=body.encode(), headers=dict(request.headers), method="POST"
    )
    with urllib.request.urlopen(sent) as answer:
        assert answer.status == 200
    described = world.iam.get_role(RoleName="spaced")["Role"]["Description"]
    assert described == "a role with spaces"
