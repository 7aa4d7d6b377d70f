"""Tests of the IAM emulator through boto3, against the real server process.

"$(scripts/emulator.sh python)" -m pytest -q tools/iam-emulator
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ACCOUNT = "123456789012"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


class Emulator:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # blocks until READY or exit
        assert line.startswith("READY http://127.0.0.1:"), f"unexpected first line {line!r}"
        self.startup_seconds = time.monotonic() - started
        self.url = line.split(" ", 1)[1]

    def client(self, service: str = "iam", **creds: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=creds.get("key", "AKIAIOSFODNN7EXAMPLE"),
            aws_secret_access_key=creds.get("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            config=NO_RETRIES,
        )

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        return time.monotonic() - started


def server_argv() -> list[str]:
    return [sys.executable, os.path.join(HERE, "server.py"), "--port", "0"]


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    e = Emulator(server_argv())
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "emu" in request.fixturenames:
        emu: Emulator = request.getfixturevalue("emu")
        assert emu.control("POST", "/_emulator/reset")[0] == 200


@pytest.fixture
def iam(emu: Emulator) -> Any:
    return emu.client()


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def make_policy(iam: Any, name: str = "p") -> str:
    return iam.create_policy(PolicyName=name, PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]


def pem_certificate() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iam-emulator-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def ssh_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


# ---------------------------------------------------------------- DeleteUser


def _access_key(iam: Any, user: str) -> Any:
    key = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    return lambda: iam.delete_access_key(UserName=user, AccessKeyId=key)


def _login_profile(iam: Any, user: str) -> Any:
    iam.create_login_profile(UserName=user, Password="Str0ng!Passw0rd")
    return lambda: iam.delete_login_profile(UserName=user)


def _group(iam: Any, user: str) -> Any:
    iam.create_group(GroupName="g")
    iam.add_user_to_group(GroupName="g", UserName=user)
    return lambda: iam.remove_user_from_group(GroupName="g", UserName=user)


def _attached_policy(iam: Any, user: str) -> Any:
    arn = make_policy(iam)
    iam.attach_user_policy(UserName=user, PolicyArn=arn)
    return lambda: iam.detach_user_policy(UserName=user, PolicyArn=arn)


def _inline_policy(iam: Any, user: str) -> Any:
    iam.put_user_policy(UserName=user, PolicyName="inline", PolicyDocument=ALLOW_ALL)
    return lambda: iam.delete_user_policy(UserName=user, PolicyName="inline")


def _mfa_device(iam: Any, user: str) -> Any:
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="mfa")["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName=user,
        SerialNumber=serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    return lambda: iam.deactivate_mfa_device(UserName=user, SerialNumber=serial)


def _signing_certificate(iam: Any, user: str) -> Any:
    cert_id = iam.upload_signing_certificate(UserName=user, CertificateBody=pem_certificate())[
        "Certificate"
    ]["CertificateId"]
    return lambda: iam.delete_signing_certificate(UserName=user, CertificateId=cert_id)


def _ssh_key(iam: Any, user: str) -> Any:
    key_id = iam.upload_ssh_public_key(UserName=user, SSHPublicKeyBody=ssh_public_key())[
        "SSHPublicKey"
    ]["SSHPublicKeyId"]
    return lambda: iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=key_id)


def _service_credential(iam: Any, user: str) -> Any:
    cred_id = iam.create_service_specific_credential(
        UserName=user, ServiceName="codecommit.amazonaws.com"
    )["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    return lambda: iam.delete_service_specific_credential(
        UserName=user, ServiceSpecificCredentialId=cred_id
    )


@pytest.mark.parametrize(
    "attach, message",
    [
        (_access_key, "Cannot delete entity, must delete access keys first."),
        (_login_profile, "Cannot delete entity, must delete login profile first."),
        (_group, "Cannot delete entity, must remove users from group first."),
        (_attached_policy, "Cannot delete entity, must detach all policies first."),
        (_inline_policy, "Cannot delete entity, must delete policies first."),
        (_mfa_device, "Cannot delete entity, must delete MFA device first."),
        (_signing_certificate, "Cannot delete entity, must delete signing certificates first."),
        (_ssh_key, "Cannot delete entity, must delete SSH public keys first."),
        (
            _service_credential,
            "Cannot delete entity, must delete service specific credentials first.",
        ),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_delete_user_refused_while_user_has_dependents(iam: Any, attach: Any, message: str) -> None:
    iam.create_user(UserName="alice")
    detach = attach(iam, "alice")
    with pytest.raises(ClientError) as exc:
        iam.delete_user(UserName="alice")
    assert error_of(exc) == ("DeleteConflict", 409, message)
    iam.get_user(UserName="alice")  # still there
    detach()
    iam.delete_user(UserName="alice")
    with pytest.raises(ClientError) as exc:
        iam.get_user(UserName="alice")
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)


# ---------------------------------------------------------------- DeleteGroup


def test_delete_group_refused_while_group_has_members_or_policies(iam: Any) -> None:
    iam.create_group(GroupName="devs")
    iam.create_user(UserName="bob")
    arn = make_policy(iam)
    iam.add_user_to_group(GroupName="devs", UserName="bob")
    iam.attach_group_policy(GroupName="devs", PolicyArn=arn)
    iam.put_group_policy(GroupName="devs", PolicyName="inline", PolicyDocument=ALLOW_ALL)

    steps = [
        (
            "Cannot delete entity, must remove users from group first.",
            lambda: iam.remove_user_from_group(GroupName="devs", UserName="bob"),
        ),
        (
            "Cannot delete entity, must detach all policies first.",
            lambda: iam.detach_group_policy(GroupName="devs", PolicyArn=arn),
        ),
        (
            "Cannot delete entity, must delete policies first.",
            lambda: iam.delete_group_policy(GroupName="devs", PolicyName="inline"),
        ),
    ]
    for message, remove in steps:
        with pytest.raises(ClientError) as exc:
            iam.delete_group(GroupName="devs")
        assert error_of(exc) == ("DeleteConflict", 409, message)
        remove()
    iam.delete_group(GroupName="devs")
    assert iam.list_groups()["Groups"] == []


# ---------------------------------------------------------------- DeletePolicy

ATTACHED = "Cannot delete a policy attached to entities."


def _assert_delete_policy_refused(iam: Any, arn: str, message: str) -> None:
    with pytest.raises(ClientError) as exc:
        iam.delete_policy(PolicyArn=arn)
    assert error_of(exc) == ("DeleteConflict", 409, message)


@pytest.mark.parametrize("kind", ["user", "group", "role", "user-boundary", "role-boundary"])
def test_delete_policy_refused_while_attached(iam: Any, kind: str) -> None:
    arn = make_policy(iam)
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    if kind == "user":
        iam.create_user(UserName="u")
        iam.attach_user_policy(UserName="u", PolicyArn=arn)
        undo = lambda: iam.detach_user_policy(UserName="u", PolicyArn=arn)  # noqa: E731
    elif kind == "group":
        iam.create_group(GroupName="g")
        iam.attach_group_policy(GroupName="g", PolicyArn=arn)
        undo = lambda: iam.detach_group_policy(GroupName="g", PolicyArn=arn)  # noqa: E731
    elif kind == "role":
        iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust)
        iam.attach_role_policy(RoleName="r", PolicyArn=arn)
        undo = lambda: iam.detach_role_policy(RoleName="r", PolicyArn=arn)  # noqa: E731
    elif kind == "user-boundary":
        iam.create_user(UserName="u")
        iam.put_user_permissions_boundary(UserName="u", PermissionsBoundary=arn)
        undo = lambda: iam.delete_user_permissions_boundary(UserName="u")  # noqa: E731
    else:
        iam.create_role(RoleName="r", AssumeRolePolicyDocument=trust, PermissionsBoundary=arn)
        undo = lambda: iam.delete_role_permissions_boundary(RoleName="r")  # noqa: E731
    _assert_delete_policy_refused(iam, arn, ATTACHED)
    undo()
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as exc:
        iam.get_policy(PolicyArn=arn)
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)


def test_delete_policy_refused_while_it_has_non_default_versions(iam: Any) -> None:
    arn = make_policy(iam)
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=ALLOW_ALL, SetAsDefault=True)
    _assert_delete_policy_refused(
        iam,
        arn,
        "This policy has more than one version. Before you delete a policy, you must delete "
        "the policy's versions. The default version is deleted with the policy.",
    )
    iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    iam.delete_policy(PolicyArn=arn)


def test_policy_versions_are_limited_to_five(iam: Any) -> None:
    arn = make_policy(iam)
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=ALLOW_ALL)
    with pytest.raises(ClientError) as exc:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=ALLOW_ALL)
    assert error_of(exc)[:2] == ("LimitExceeded", 409)


# ---------------------------------------------------------------- missing entities


def test_deleting_missing_things_is_no_such_entity(iam: Any) -> None:
    iam.create_user(UserName="u")
    iam.create_group(GroupName="g")
    arn = make_policy(iam)
    calls = [
        lambda: iam.delete_user(UserName="ghost"),
        lambda: iam.delete_group(GroupName="ghost"),
        lambda: iam.delete_policy(PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/ghost"),
        lambda: iam.delete_login_profile(UserName="u"),
        lambda: iam.delete_access_key(UserName="u", AccessKeyId="AKIAGHOSTGHOSTGHOST1"),
        lambda: iam.detach_user_policy(UserName="u", PolicyArn=arn),
        lambda: iam.delete_user_policy(UserName="u", PolicyName="ghost"),
        lambda: iam.remove_user_from_group(GroupName="g", UserName="u"),
        lambda: iam.delete_service_specific_credential(
            UserName="u", ServiceSpecificCredentialId="ACCAGHOSTGHOSTGHOST12"
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc)[:2] == ("NoSuchEntity", 404)


# ---------------------------------------------------------------- limits


def test_third_access_key_exceeds_quota(iam: Any) -> None:
    iam.create_user(UserName="u")
    iam.create_access_key(UserName="u")
    iam.create_access_key(UserName="u")
    with pytest.raises(ClientError) as exc:
        iam.create_access_key(UserName="u")
    assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for AccessKeysPerUser: 2")


def test_managed_policy_attachments_are_idempotent_and_limited(iam: Any) -> None:
    iam.create_user(UserName="u")
    arns = [make_policy(iam, f"p{i}") for i in range(11)]
    iam.attach_user_policy(UserName="u", PolicyArn=arns[0])
    iam.attach_user_policy(UserName="u", PolicyArn=arns[0])
    assert iam.get_policy(PolicyArn=arns[0])["Policy"]["AttachmentCount"] == 1
    for arn in arns[1:10]:
        iam.attach_user_policy(UserName="u", PolicyArn=arn)
    with pytest.raises(ClientError) as exc:
        iam.attach_user_policy(UserName="u", PolicyArn=arns[10])
    assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for PoliciesPerUser: 10")


# ---------------------------------------------------------------- policy sizes


def sized_policy(size: int) -> str:
    """A valid permissions policy whose IAM-counted size is exactly `size`:
    pretty-printed, so that its raw length is larger (whitespace outside strings
    does not count), with a space inside a string value (which does count)."""
    doc: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/x y"}
        ],
    }
    compact = len(json.dumps(doc, separators=(",", ":")))
    doc["Statement"][0]["Resource"] += "a" * (size - compact)
    assert len(json.dumps(doc, separators=(",", ":"))) == size
    pretty = json.dumps(doc, indent=4)
    assert len(pretty) > size
    return pretty


def sized_trust_policy(size: int) -> str:
    doc: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "x y"}},
            }
        ],
    }
    compact = len(json.dumps(doc, separators=(",", ":")))
    doc["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] += "a" * (size - compact)
    assert len(json.dumps(doc, separators=(",", ":"))) == size
    return json.dumps(doc, indent=2)


def test_policy_size_counts_characters_without_json_whitespace() -> None:
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from strict_iam import policy_size

    assert policy_size('{"a": "b"}') == len('{"a":"b"}')
    assert policy_size('{\n\t"a" :\r\n [ 1 , 2 ]\n}') == len('{"a":[1,2]}')
    # Inside a string everything counts, an escaped quote does not end the string,
    # and an escape counts as written.
    assert policy_size('{"a b": " c "}') == len('{"a b":" c "}')
    assert policy_size('{"a": "x\\" y", "b" : 1}') == len('{"a":"x\\" y","b":1}')
    assert policy_size('{"a": "\\u0041"}') == len('{"a":"\\u0041"}')
    assert policy_size('{"a": "\\\\", "b" : 1}') == len('{"a":"\\\\","b":1}')


def test_managed_policy_size_limit(iam: Any) -> None:
    arn = iam.create_policy(PolicyName="big", PolicyDocument=sized_policy(6144))["Policy"]["Arn"]
    with pytest.raises(ClientError) as exc:
        iam.create_policy(PolicyName="too-big", PolicyDocument=sized_policy(6145))
    assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for PolicySize: 6144")
    assert [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]] == ["big"]

    iam.create_policy_version(PolicyArn=arn, PolicyDocument=sized_policy(6144))
    with pytest.raises(ClientError) as exc:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=sized_policy(6145))
    assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for PolicySize: 6144")
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 2


TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@pytest.mark.parametrize("kind, limit", [("user", 2048), ("group", 5120), ("role", 10240)])
def test_inline_policies_of_a_principal_are_limited_together(
    iam: Any, kind: str, limit: int
) -> None:
    if kind == "user":
        iam.create_user(UserName="Name")
    elif kind == "group":
        iam.create_group(GroupName="Name")
    else:
        iam.create_role(RoleName="Name", AssumeRolePolicyDocument=TRUST)
    entity = {f"{kind.capitalize()}Name": "Name"}
    put_policy = getattr(iam, f"put_{kind}_policy")
    list_policies = getattr(iam, f"list_{kind}_policies")

    def put(name: str, document: str) -> None:
        put_policy(**entity, PolicyName=name, PolicyDocument=document)

    message = f"Maximum policy size of {limit} bytes exceeded for {kind} Name"

    put("first", sized_policy(1000))
    put("second", sized_policy(limit - 1000))  # exactly the limit together
    # Putting a same-named policy replaces it: the total stays at the limit.
    put("second", sized_policy(limit - 1000))
    with pytest.raises(ClientError) as exc:
        put("second", sized_policy(limit - 999))
    assert error_of(exc) == ("LimitExceeded", 409, message)
    with pytest.raises(ClientError) as exc:
        put("third", sized_policy(200))  # a new one on top of a full budget
    assert error_of(exc) == ("LimitExceeded", 409, message)
    with pytest.raises(ClientError) as exc:
        put("first", sized_policy(1001))  # growing the other one is refused too
    assert error_of(exc) == ("LimitExceeded", 409, message)
    assert sorted(list_policies(**entity)["PolicyNames"]) == ["first", "second"]
    # Deleting one frees its share of the budget.
    getattr(iam, f"delete_{kind}_policy")(**entity, PolicyName="second")
    put("third", sized_policy(limit - 1000))


def test_role_trust_policy_size_limit(iam: Any) -> None:
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=sized_trust_policy(2048))
    message = "Cannot exceed quota for ACLSizePerRole: 2048"
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName="r2", AssumeRolePolicyDocument=sized_trust_policy(2049))
    assert error_of(exc) == ("LimitExceeded", 409, message)
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["r"]

    iam.update_assume_role_policy(RoleName="r", PolicyDocument=sized_trust_policy(2048))
    with pytest.raises(ClientError) as exc:
        iam.update_assume_role_policy(RoleName="r", PolicyDocument=sized_trust_policy(2049))
    assert error_of(exc) == ("LimitExceeded", 409, message)


# ---------------------------------------------------------------- tags

TAGGABLE = ["user", "role", "policy"]


def create_tagged(iam: Any, kind: str, name: str, tags: list[dict[str, str]]) -> str:
    """Creates a user, role or customer managed policy with tags; returns what
    Tag*/List*Tags take to name it (the name, or the policy's ARN)."""
    if kind == "user":
        iam.create_user(UserName=name, Tags=tags)
        return name
    if kind == "role":
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST, Tags=tags)
        return name
    return iam.create_policy(PolicyName=name, PolicyDocument=ALLOW_ALL, Tags=tags)["Policy"]["Arn"]


def _ref(kind: str, ref: str) -> dict[str, str]:
    return {"user": {"UserName": ref}, "role": {"RoleName": ref}, "policy": {"PolicyArn": ref}}[
        kind
    ]


def tag(iam: Any, kind: str, ref: str, tags: list[dict[str, str]]) -> None:
    getattr(iam, f"tag_{kind}")(**_ref(kind, ref), Tags=tags)


def tags_of(iam: Any, kind: str, ref: str) -> dict[str, str]:
    listed = getattr(iam, f"list_{kind}_tags")(**_ref(kind, ref), MaxItems=1000)["Tags"]
    return {t["Key"]: t["Value"] for t in listed}


def numbered_tags(count: int, start: int = 0) -> list[dict[str, str]]:
    return [{"Key": f"k{i:02d}", "Value": "v"} for i in range(start, start + count)]


@pytest.mark.parametrize("kind", TAGGABLE)
def test_at_most_50_tags_per_entity(iam: Any, kind: str) -> None:
    ref = create_tagged(iam, kind, "full", numbered_tags(50))
    # Re-sending a key (in another letter case) replaces its tag: still 50.
    tag(iam, kind, ref, [{"Key": "K00", "Value": "new"}])
    assert len(tags_of(iam, kind, ref)) == 50
    with pytest.raises(ClientError) as exc:
        tag(iam, kind, ref, numbered_tags(1, start=50))
    assert error_of(exc)[:2] == ("LimitExceeded", 409)
    assert len(tags_of(iam, kind, ref)) == 50 and "k50" not in tags_of(iam, kind, ref)

    ref = create_tagged(iam, kind, "almost", numbered_tags(48))
    tag(iam, kind, ref, numbered_tags(2, start=48))  # 50 after the request
    with pytest.raises(ClientError) as exc:
        tag(iam, kind, ref, numbered_tags(1, start=50))  # 51 after the request
    assert error_of(exc)[:2] == ("LimitExceeded", 409)

    # More than 50 in one request breaks the service model's list length.
    with pytest.raises(ClientError) as exc:
        create_tagged(iam, kind, "too-many", numbered_tags(51))
    assert error_of(exc)[:2] == ("ValidationError", 400)
    assert "Member must have length less than or equal to 50" in error_of(exc)[2]


@pytest.mark.parametrize("kind", TAGGABLE)
def test_tag_key_and_value_lengths_and_characters(emu: Emulator, iam: Any, kind: str) -> None:
    # botocore itself refuses an empty key before sending it; IAM must refuse it too.
    unchecked = boto3.client(
        "iam",
        endpoint_url=emu.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=NO_RETRIES.merge(Config(parameter_validation=False)),
    )
    ref = create_tagged(iam, kind, "t", [{"Key": "k" * 128, "Value": "v" * 256}])
    tag(iam, kind, ref, [{"Key": "empty-value", "Value": ""}])
    tag(iam, kind, ref, [{"Key": "Ünïcode key 1 _.:/=+-@", "Value": "välue 2 _.:/=+-@"}])
    assert tags_of(iam, kind, ref) == {
        "k" * 128: "v" * 256,
        "empty-value": "",
        "Ünïcode key 1 _.:/=+-@": "välue 2 _.:/=+-@",
    }
    bad = [
        ({"Key": "k" * 129, "Value": "v"}, "length less than or equal to 128"),
        ({"Key": "k", "Value": "v" * 257}, "length less than or equal to 256"),
        ({"Key": "", "Value": "v"}, "length greater than or equal to 1"),
        ({"Key": "a#b", "Value": "v"}, "regular expression pattern"),
        ({"Key": "k", "Value": "tab\there"}, "regular expression pattern"),
    ]
    for n, (bad_tag, constraint) in enumerate(bad):
        with pytest.raises(ClientError) as exc:
            tag(unchecked, kind, ref, [bad_tag])
        code, status, message = error_of(exc)
        assert (code, status) == ("ValidationError", 400), bad_tag
        assert constraint in message, message
        with pytest.raises(ClientError) as exc:
            create_tagged(unchecked, kind, f"bad{n}", [bad_tag])
        assert error_of(exc)[:2] == ("ValidationError", 400), bad_tag
    assert len(tags_of(iam, kind, ref)) == 3


@pytest.mark.parametrize("kind", TAGGABLE)
def test_aws_prefix_is_reserved_in_tag_keys(iam: Any, kind: str) -> None:
    ref = create_tagged(iam, kind, "t", [{"Key": "aws", "Value": "v"}])
    tag(iam, kind, ref, [{"Key": "awsx:y", "Value": "v"}, {"Key": "x:aws:y", "Value": "v"}])
    for key in ["aws:x", "AWS:x", "Aws:team"]:
        with pytest.raises(ClientError) as exc:
            tag(iam, kind, ref, [{"Key": key, "Value": "v"}])
        assert error_of(exc)[:2] == ("InvalidInput", 400), key
        with pytest.raises(ClientError) as exc:
            create_tagged(iam, kind, "other", [{"Key": key, "Value": "v"}])
        assert error_of(exc)[:2] == ("InvalidInput", 400), key
    assert set(tags_of(iam, kind, ref)) == {"aws", "awsx:y", "x:aws:y"}


@pytest.mark.parametrize("kind", TAGGABLE)
def test_tag_keys_are_case_insensitive(iam: Any, kind: str) -> None:
    ref = create_tagged(iam, kind, "t", [{"Key": "Team", "Value": "a"}])
    tag(iam, kind, ref, [{"Key": "team", "Value": "b"}])
    assert tags_of(iam, kind, ref) == {"team": "b"}
    with pytest.raises(ClientError) as exc:
        tag(iam, kind, ref, [{"Key": "x", "Value": "1"}, {"Key": "X", "Value": "2"}])
    assert error_of(exc)[:2] == ("InvalidInput", 400)


# ---------------------------------------------------------------- names and letter case


def test_user_and_group_names_are_case_insensitive(iam: Any) -> None:
    iam.create_user(UserName="Carol")
    with pytest.raises(ClientError) as exc:
        iam.create_user(UserName="carol")
    assert error_of(exc) == ("EntityAlreadyExists", 409, "User with name carol already exists.")
    iam.create_group(GroupName="Devs")
    with pytest.raises(ClientError) as exc:
        iam.create_group(GroupName="DEVS")
    assert error_of(exc) == ("EntityAlreadyExists", 409, "Group with name DEVS already exists.")
    iam.create_user(UserName="Dave")  # a different name is fine

    # Lookups in any letter case find the entity, which keeps its own spelling.
    assert iam.get_user(UserName="carol")["User"]["UserName"] == "Carol"
    assert iam.get_group(GroupName="devs")["Group"]["GroupName"] == "Devs"
    iam.add_user_to_group(GroupName="dEVS", UserName="CAROL")
    assert [u["UserName"] for u in iam.get_group(GroupName="Devs")["Users"]] == ["Carol"]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="carol")["Groups"]] == [
        "Devs"
    ]
    key = iam.create_access_key(UserName="carol")["AccessKey"]
    assert key["UserName"] == "Carol"
    listed = iam.list_access_keys(UserName="CAROL")["AccessKeyMetadata"]
    assert [(k["UserName"], k["AccessKeyId"]) for k in listed] == [("Carol", key["AccessKeyId"])]
    iam.tag_user(UserName="carol", Tags=[{"Key": "team", "Value": "a"}])
    assert iam.list_user_tags(UserName="Carol")["Tags"] == [{"Key": "team", "Value": "a"}]
    iam.put_user_policy(UserName="carol", PolicyName="inline", PolicyDocument=ALLOW_ALL)
    assert iam.list_user_policies(UserName="Carol")["PolicyNames"] == ["inline"]
    iam.put_group_policy(GroupName="devs", PolicyName="inline", PolicyDocument=ALLOW_ALL)
    assert iam.list_group_policies(GroupName="Devs")["PolicyNames"] == ["inline"]

    # Renaming onto another entity's name, in any case, is refused.
    with pytest.raises(ClientError) as exc:
        iam.update_user(UserName="carol", NewUserName="DAVE")
    assert error_of(exc)[:2] == ("EntityAlreadyExists", 409)
    iam.create_group(GroupName="Ops")
    with pytest.raises(ClientError) as exc:
        iam.update_group(GroupName="ops", NewGroupName="devs")
    assert error_of(exc)[:2] == ("EntityAlreadyExists", 409)
    assert sorted(u["UserName"] for u in iam.list_users()["Users"]) == ["Carol", "Dave"]

    # Teardown through other spellings works, and frees the name.
    iam.remove_user_from_group(GroupName="devs", UserName="carol")
    assert iam.list_groups_for_user(UserName="Carol")["Groups"] == []
    iam.delete_access_key(UserName="carol", AccessKeyId=key["AccessKeyId"])
    iam.delete_user_policy(UserName="CAROL", PolicyName="inline")
    iam.delete_group_policy(GroupName="DEVS", PolicyName="inline")
    iam.delete_user(UserName="carol")
    iam.delete_group(GroupName="devs")
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["Dave"]
    assert [g["GroupName"] for g in iam.list_groups()["Groups"]] == ["Ops"]
    iam.create_user(UserName="carol")
    assert iam.get_user(UserName="CAROL")["User"]["UserName"] == "carol"


def test_role_and_instance_profile_names_are_case_insensitive(iam: Any) -> None:
    iam.create_role(RoleName="Deployer", AssumeRolePolicyDocument=TRUST)
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=TRUST)
    assert error_of(exc) == ("EntityAlreadyExists", 409, "Role with name deployer already exists.")
    assert iam.get_role(RoleName="DEPLOYER")["Role"]["RoleName"] == "Deployer"
    iam.put_role_policy(RoleName="deployer", PolicyName="inline", PolicyDocument=ALLOW_ALL)
    assert iam.list_role_policies(RoleName="Deployer")["PolicyNames"] == ["inline"]

    iam.create_instance_profile(InstanceProfileName="Web")
    with pytest.raises(ClientError) as exc:
        iam.create_instance_profile(InstanceProfileName="web")
    assert error_of(exc)[:2] == ("EntityAlreadyExists", 409)
    iam.add_role_to_instance_profile(InstanceProfileName="WEB", RoleName="deployer")
    profile = iam.get_instance_profile(InstanceProfileName="web")["InstanceProfile"]
    assert profile["InstanceProfileName"] == "Web"
    assert [r["RoleName"] for r in profile["Roles"]] == ["Deployer"]
    # The role is in an instance profile under any spelling of its name.
    with pytest.raises(ClientError) as exc:
        iam.delete_role(RoleName="deployer")
    assert error_of(exc)[:2] == ("DeleteConflict", 409)
    iam.remove_role_from_instance_profile(InstanceProfileName="web", RoleName="DEPLOYER")
    iam.delete_role_policy(RoleName="DEPLOYER", PolicyName="inline")
    iam.delete_role(RoleName="deployer")
    assert iam.list_roles()["Roles"] == []


def test_customer_managed_policy_names_are_unique_regardless_of_path_and_case(iam: Any) -> None:
    iam.create_policy(PolicyName="Shared", Path="/a/", PolicyDocument=ALLOW_ALL)
    message = "A policy called {} already exists. Duplicate names are not allowed."
    for name, path in [("Shared", "/b/"), ("shared", "/a/"), ("SHARED", "/")]:
        with pytest.raises(ClientError) as exc:
            iam.create_policy(PolicyName=name, Path=path, PolicyDocument=ALLOW_ALL)
        assert error_of(exc) == ("EntityAlreadyExists", 409, message.format(name))
    # AWS managed policies live in another namespace (arn:aws:iam::aws:policy/...).
    iam.create_policy(PolicyName="ReadOnlyAccess", PolicyDocument=ALLOW_ALL)
    assert sorted(p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]) == [
        "ReadOnlyAccess",
        "Shared",
    ]


# ---------------------------------------------------------------- permissions boundaries


def test_user_permissions_boundary(iam: Any) -> None:
    arn = make_policy(iam, "boundary")
    iam.create_user(UserName="u", Tags=[{"Key": "team", "Value": "a"}])
    assert "PermissionsBoundary" not in iam.get_user(UserName="u")["User"]

    iam.put_user_permissions_boundary(UserName="u", PermissionsBoundary=arn)
    expected = {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": arn,
    }
    assert iam.get_user(UserName="u")["User"]["PermissionsBoundary"] == expected
    # Like real IAM, ListUsers leaves out PermissionsBoundary and Tags.
    listed = iam.list_users()["Users"][0]
    assert "PermissionsBoundary" not in listed and "Tags" not in listed
    detail = iam.get_account_authorization_details(Filter=["User"])["UserDetailList"][0]
    assert detail["PermissionsBoundary"] == expected
    assert detail["Tags"] == [{"Key": "team", "Value": "a"}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["PermissionsBoundaryUsageCount"] == 1
    boundary_users = iam.list_entities_for_policy(
        PolicyArn=arn, PolicyUsageFilter="PermissionsBoundary"
    )
    assert [u["UserName"] for u in boundary_users["PolicyUsers"]] == ["u"]
    assert (
        iam.list_entities_for_policy(PolicyArn=arn, PolicyUsageFilter="PermissionsPolicy")[
            "PolicyUsers"
        ]
        == []
    )

    iam.delete_user_permissions_boundary(UserName="u")
    assert "PermissionsBoundary" not in iam.get_user(UserName="u")["User"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["PermissionsBoundaryUsageCount"] == 0

    created = iam.create_user(UserName="v", PermissionsBoundary=arn)["User"]
    assert created["PermissionsBoundary"] == expected
    assert iam.get_user(UserName="v")["User"]["PermissionsBoundary"] == expected


def test_permissions_boundary_must_be_an_existing_policy(iam: Any) -> None:
    iam.create_user(UserName="u")
    missing = f"arn:aws:iam::{ACCOUNT}:policy/missing"
    with pytest.raises(ClientError) as exc:
        iam.put_user_permissions_boundary(UserName="u", PermissionsBoundary=missing)
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as exc:
        iam.put_user_permissions_boundary(
            UserName="u", PermissionsBoundary=f"arn:aws:iam::{ACCOUNT}:role/not-a-policy"
        )
    assert error_of(exc)[:2] == ("InvalidInput", 400)
    with pytest.raises(ClientError) as exc:
        iam.create_user(UserName="w", PermissionsBoundary=missing)
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["u"]
    # An AWS managed policy works as a boundary: they are loaded.
    iam.put_user_permissions_boundary(
        UserName="u", PermissionsBoundary="arn:aws:iam::aws:policy/ReadOnlyAccess"
    )


# ---------------------------------------------------------------- login profiles


def test_login_profile_reset_flag_and_partial_update(iam: Any) -> None:
    iam.create_user(UserName="u")
    created = iam.create_login_profile(
        UserName="u", Password="Str0ng!Passw0rd", PasswordResetRequired=True
    )
    assert created["LoginProfile"]["PasswordResetRequired"] is True
    # Updating only the flag must keep the login profile (moto would drop it).
    iam.update_login_profile(UserName="u", PasswordResetRequired=False)
    assert iam.get_login_profile(UserName="u")["LoginProfile"]["PasswordResetRequired"] is False


def test_passwords_must_satisfy_the_password_policy(iam: Any) -> None:
    iam.create_user(UserName="u")
    with pytest.raises(ClientError) as exc:
        iam.create_login_profile(UserName="u", Password="short")  # default policy: 8+, 3 classes
    assert error_of(exc)[:2] == ("PasswordPolicyViolation", 400)
    iam.update_account_password_policy(
        MinimumPasswordLength=20, RequireSymbols=True, RequireNumbers=True
    )
    with pytest.raises(ClientError) as exc:
        iam.create_login_profile(UserName="u", Password="Str0ng!Passw0rd")  # 15 chars
    assert error_of(exc)[:2] == ("PasswordPolicyViolation", 400)
    iam.create_login_profile(UserName="u", Password="Str0ng!Passw0rd-long-enough")
    with pytest.raises(ClientError) as exc:
        iam.update_login_profile(UserName="u", Password="no-digits-here-at-all!")
    assert error_of(exc)[:2] == ("PasswordPolicyViolation", 400)


def test_change_password_checks_the_old_password_of_the_calling_user(emu: Emulator, iam: Any) -> None:
    iam.create_user(UserName="u")
    iam.create_login_profile(UserName="u", Password="First-Passw0rd", PasswordResetRequired=True)
    key = iam.create_access_key(UserName="u")["AccessKey"]
    as_u = emu.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(ClientError) as exc:
        as_u.change_password(OldPassword="Wrong-Passw0rd", NewPassword="Second-Passw0rd")
    assert error_of(exc)[:2] == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        as_u.change_password(OldPassword="First-Passw0rd", NewPassword="short")
    assert error_of(exc)[:2] == ("PasswordPolicyViolation", 400)
    profile = iam.get_login_profile(UserName="u")["LoginProfile"]
    assert profile["PasswordResetRequired"] is True  # nothing changed so far
    as_u.change_password(OldPassword="First-Passw0rd", NewPassword="Second-Passw0rd")
    assert iam.get_login_profile(UserName="u")["LoginProfile"]["PasswordResetRequired"] is False
    # The old password no longer works; the new one does.
    with pytest.raises(ClientError) as exc:
        as_u.change_password(OldPassword="First-Passw0rd", NewPassword="Third-Passw0rd")
    assert error_of(exc)[:2] == ("AccessDenied", 403)
    as_u.change_password(OldPassword="Second-Passw0rd", NewPassword="Third-Passw0rd")
    # Only IAM users change their own password; a user without a login profile has none.
    with pytest.raises(ClientError) as exc:
        iam.change_password(OldPassword="Third-Passw0rd", NewPassword="Fourth-Passw0rd")
    assert error_of(exc)[:2] == ("InvalidUserType", 400)
    iam.create_user(UserName="v")
    key = iam.create_access_key(UserName="v")["AccessKey"]
    as_v = emu.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(ClientError) as exc:
        as_v.change_password(OldPassword="x", NewPassword="Fifth-Passw0rd")
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)


# ---------------------------------------------------------------- service-specific credentials


def test_service_specific_credentials(iam: Any) -> None:
    iam.create_user(UserName="u")
    cred = iam.create_service_specific_credential(
        UserName="u", ServiceName="codecommit.amazonaws.com"
    )["ServiceSpecificCredential"]
    assert cred["ServiceUserName"] == f"u-at-{ACCOUNT}" and cred["ServicePassword"]
    assert cred["Status"] == "Active"
    cred_id = cred["ServiceSpecificCredentialId"]
    listed = iam.list_service_specific_credentials(UserName="u")["ServiceSpecificCredentials"]
    assert [c["ServiceSpecificCredentialId"] for c in listed] == [cred_id]
    assert "ServicePassword" not in listed[0]
    iam.update_service_specific_credential(
        UserName="u", ServiceSpecificCredentialId=cred_id, Status="Inactive"
    )
    listed = iam.list_service_specific_credentials(UserName="u")["ServiceSpecificCredentials"]
    assert listed[0]["Status"] == "Inactive"
    reset = iam.reset_service_specific_credential(UserName="u", ServiceSpecificCredentialId=cred_id)
    assert reset["ServiceSpecificCredential"]["ServicePassword"] != cred["ServicePassword"]
    iam.create_service_specific_credential(UserName="u", ServiceName="codecommit.amazonaws.com")
    with pytest.raises(ClientError) as exc:
        iam.create_service_specific_credential(UserName="u", ServiceName="codecommit.amazonaws.com")
    assert error_of(exc)[:2] == ("LimitExceeded", 409)
    with pytest.raises(ClientError) as exc:
        iam.create_service_specific_credential(UserName="u", ServiceName="s3.amazonaws.com")
    assert error_of(exc)[:2] == ("NotSupportedService", 404)


# ---------------------------------------------------------------- pagination


def test_list_users_and_authorization_details_paginate(iam: Any) -> None:
    names = [f"user{i:02d}" for i in range(7)]
    for name in names:
        iam.create_user(UserName=name)
    iam.create_group(GroupName="g")
    make_policy(iam, "local")
    first = iam.list_users(MaxItems=3)
    assert first["IsTruncated"] is True and len(first["Users"]) == 3
    iam.delete_user(UserName="user04")  # a deletion between pages skips nothing else
    users = [
        u["UserName"]
        for page in iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 3})
        for u in page["Users"]
    ]
    assert users == [n for n in names if n != "user04"]

    pages = list(
        iam.get_paginator("get_account_authorization_details").paginate(
            PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 4  # 6 users + 1 group + 1 local policy, 2 per page
    assert sum(len(p["UserDetailList"]) for p in pages) == 6
    assert sum(len(p["GroupDetailList"]) for p in pages) == 1
    # Unattached AWS managed policies are not listed; the local one is.
    assert [p["PolicyName"] for page in pages for p in page["Policies"]] == ["local"]


# ---------------------------------------------------------------- unknown actions


def test_unimplemented_action_is_an_iam_error_not_a_crash(iam: Any) -> None:
    with pytest.raises(ClientError) as exc:
        iam.generate_service_last_accessed_details(Arn=f"arn:aws:iam::{ACCOUNT}:user/u")
    assert error_of(exc)[:2] == ("InvalidAction", 400)


# ---------------------------------------------------------------- faults


def test_fault_fails_next_matching_calls_then_clears(emu: Emulator, iam: Any) -> None:
    status, rule = emu.control(
        "POST",
        "/_emulator/faults",
        {
            "action": "CreateUser",
            "code": "Throttling",
            "status": 400,
            "message": "Rate exceeded",
            "count": 2,
        },
    )
    assert status == 200 and rule["count"] == 2
    iam.list_users()  # other actions are untouched
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            iam.create_user(UserName="u")
        assert error_of(exc) == ("Throttling", 400, "Rate exceeded")
    assert iam.list_users()["Users"] == []  # a failed call had no effect
    iam.create_user(UserName="u")
    assert emu.control("GET", "/_emulator/faults") == (200, {"faults": []})

    emu.control("POST", "/_emulator/faults", {"action": "*", "code": "ServiceFailure", "count": -1})
    for _ in range(3):
        with pytest.raises(ClientError) as exc:
            iam.get_user(UserName="u")
        assert error_of(exc)[:2] == ("ServiceFailure", 500)
    assert emu.control("DELETE", "/_emulator/faults") == (200, {"cleared": 1})
    iam.get_user(UserName="u")


def test_dropped_response_still_performs_the_action(emu: Emulator, iam: Any) -> None:
    emu.control("POST", "/_emulator/faults", {"action": "CreateUser", "drop": "500"})
    with pytest.raises(ClientError) as exc:
        iam.create_user(UserName="a")
    assert error_of(exc)[:2] == ("ServiceFailure", 500)
    iam.get_user(UserName="a")

    emu.control("POST", "/_emulator/faults", {"action": "CreateAccessKey", "drop": True})
    iam.create_user(UserName="b")
    with pytest.raises(BotoCoreError):  # connection closed, no HTTP response at all
        iam.create_access_key(UserName="b")
    assert len(iam.list_access_keys(UserName="b")["AccessKeyMetadata"]) == 1


def test_fault_delay_and_validation(emu: Emulator, iam: Any) -> None:
    emu.control("POST", "/_emulator/faults", {"action": "ListUsers", "delay_ms": 300})
    started = time.monotonic()
    iam.list_users()
    assert time.monotonic() - started >= 0.3
    for bad in [
        {},
        {"action": "ListUsers"},
        {"action": "X", "code": "Y", "drop": True},
        {"action": "X", "code": "Y", "count": 0},
        {"action": "X", "bogus": 1},
    ]:
        assert emu.control("POST", "/_emulator/faults", bad)[0] == 400


def test_fault_probability_mixes_faults_at_a_chosen_rate(emu: Emulator, iam: Any) -> None:
    # 20 % of GetUser calls fail: half throttled, half 5xx (the second rule sees only
    # what the first let through, hence 0.1 / 0.9). Seeded: the same draws every run.
    rules = [
        {"action": "GetUser", "code": "Throttling", "count": -1, "probability": 0.1, "seed": 1},
        {
            "action": "GetUser",
            "code": "ServiceFailure",
            "count": -1,
            "probability": 0.1 / 0.9,
            "seed": 2,
        },
    ]
    status, described = emu.control("POST", "/_emulator/faults", rules)
    assert status == 200 and described[0]["probability"] == 0.1 and described[0]["hits"] == 0
    iam.create_user(UserName="u")
    codes: Counter[str] = Counter()
    n = 1000
    for _ in range(n):
        try:
            iam.get_user(UserName="u")
            codes["ok"] += 1
        except ClientError as err:
            codes[err.response["Error"]["Code"]] += 1
    # Binomial: 1000 draws at 10 %, σ ≈ 9.5; 5σ bounds never fail by chance.
    assert 50 <= codes["Throttling"] <= 150, codes
    assert 50 <= codes["ServiceFailure"] <= 150, codes
    hits = {r["code"]: r["hits"] for r in emu.control("GET", "/_emulator/faults")[1]["faults"]}
    assert hits == {"Throttling": codes["Throttling"], "ServiceFailure": codes["ServiceFailure"]}
    # A count bounds the probabilistic rule too; a bad probability or seed is refused.
    emu.control("DELETE", "/_emulator/faults")
    emu.control(
        "POST", "/_emulator/faults", {"action": "GetUser", "code": "Throttling", "count": 3,
                                      "probability": 0.5}
    )
    failed = 0
    for _ in range(200):
        try:
            iam.get_user(UserName="u")
        except ClientError:
            failed += 1
    assert failed == 3 and emu.control("GET", "/_emulator/faults") == (200, {"faults": []})
    for bad in [0, 1.5, -0.1, "0.5", True]:
        rule = {"action": "X", "code": "Y", "probability": bad}
        assert emu.control("POST", "/_emulator/faults", rule)[0] == 400
    rule = {"action": "X", "code": "Y", "probability": 0.5, "seed": 1.5}
    assert emu.control("POST", "/_emulator/faults", rule)[0] == 400


# ---------------------------------------------------------------- call counts and reset


def test_call_counts(emu: Emulator, iam: Any) -> None:
    iam.create_user(UserName="u")
    iam.get_user(UserName="u")
    iam.get_user(UserName="u")
    with pytest.raises(ClientError):
        iam.get_user(UserName="ghost")
    emu.client("sts").get_caller_identity()
    assert emu.control("GET", "/_emulator/calls") == (200, {"CreateUser": 1, "GetUser": 3})
    assert emu.control("GET", "/_emulator/calls?service=sts") == (200, {"GetCallerIdentity": 1})
    assert emu.control("DELETE", "/_emulator/calls")[0] == 200
    assert emu.control("GET", "/_emulator/calls") == (200, {})


def test_moto_reset_clears_plugin_state(emu: Emulator, iam: Any) -> None:
    arn = make_policy(iam)
    iam.create_user(UserName="u", PermissionsBoundary=arn)
    emu.control("POST", "/_emulator/faults", {"action": "DeleteUser", "code": "Throttling"})
    req = urllib.request.Request(emu.url + "/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert emu.control("GET", "/_emulator/faults") == (200, {"faults": []})
    assert emu.control("GET", "/_emulator/calls") == (200, {})
    assert iam.list_users()["Users"] == []
    arn = make_policy(iam)
    iam.create_user(UserName="u")  # same name, fresh user: no boundary carried over
    assert "PermissionsBoundary" not in iam.get_user(UserName="u")["User"]


# ---------------------------------------------------------------- authentication


def test_authentication_enforced_after_initial_free_actions() -> None:
    emu = Emulator(server_argv(), env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        anon = emu.client()
        anon.create_user(UserName="op")
        key = anon.create_access_key(UserName="op")["AccessKey"]
        anon.put_user_policy(UserName="op", PolicyName="all", PolicyDocument=ALLOW_ALL)
        with pytest.raises(ClientError) as exc:
            anon.list_users()  # a key moto never issued
        assert error_of(exc)[0] == "InvalidClientTokenId"

        creds = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        ident = emu.client("sts", **creds).get_caller_identity()
        assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/op"
        with pytest.raises(ClientError) as exc:
            emu.client("sts", key=key["AccessKeyId"], secret="wrong").get_caller_identity()
        assert error_of(exc)[0] == "SignatureDoesNotMatch"

        op = emu.client(**creds)
        second = op.create_access_key(UserName="op")["AccessKey"]
        emu.client(key=second["AccessKeyId"], secret=second["SecretAccessKey"]).delete_access_key(
            UserName="op", AccessKeyId=key["AccessKeyId"]
        )
        with pytest.raises(ClientError) as exc:
            emu.client("sts", **creds).get_caller_identity()
        assert error_of(exc)[0] == "InvalidClientTokenId"
        # The controls need no signature.
        assert emu.control("GET", "/_emulator/calls")[1]["CreateAccessKey"] == 2

        # Authentication errors have IAM's query shape (<ErrorResponse><Error>), which SDKs
        # other than boto3 parse strictly; moto alone wraps them in <Errors>.
        req = urllib.request.Request(
            emu.url + "/",
            data=b"Action=ListUsers&Version=2010-05-08",
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Amz-Date": "20260101T000000Z",
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAXXXXXXXXXXXXXXXX/20260101/"
                "us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as raw:
            urllib.request.urlopen(req, timeout=10)
        body = raw.value.read()
        assert raw.value.code == 403
        assert b"<ErrorResponse><Error><Code>InvalidClientTokenId</Code>" in body, body
        assert b"<Errors>" not in body
        assert int(raw.value.headers["Content-Length"]) == len(body)
    finally:
        emu.stop()


# ---------------------------------------------------------------- the script


def test_script_starts_server_and_sigterm_stops_it_promptly() -> None:
    emu = Emulator(["bash", os.path.join(ROOT, "scripts", "emulator.sh"), "start", "0"])
    try:
        assert emu.control("GET", "/_emulator/health") == (200, {"status": "ok"})
        print(f"startup to READY: {emu.startup_seconds:.2f}s")
        assert emu.startup_seconds < 15
    finally:
        assert emu.stop() < 2
    assert emu.proc.returncode == 0


# ---------------------------------------------------------------- concurrency


def test_concurrent_requests_see_consistent_state(emu: Emulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def worker(n: int) -> int:
        iam = emu.client()
        for i in range(8):
            name = f"w{n}-{i}"
            iam.create_user(UserName=name, Tags=[{"Key": "k", "Value": "v"}])
            iam.get_account_authorization_details(Filter=["User"], MaxItems=1000)
            iam.list_users()
        return n

    with ThreadPoolExecutor(max_workers=5) as pool:
        assert sorted(pool.map(worker, range(5))) == list(range(5))
    assert len(emu.client().list_users(MaxItems=1000)["Users"]) == 40
    assert emu.control("GET", "/_emulator/calls")[1] == {
        "CreateUser": 40,
        "GetAccountAuthorizationDetails": 40,
        "ListUsers": 41,
    }
