"""MFA sessions and MFA-aware identity policies (strict_mfa.py), against the real server
process through boto3, with authentication enforced.

"$(scripts/emulator.sh python)" -m pytest -q tools/iam-emulator/test_strict_mfa.py
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any, Callable, Iterator

import pytest
from botocore.exceptions import ClientError

import strict_mfa
from strict_mfa import totp
from test_strict_iam import ACCOUNT, error_of
from test_strict_sts import World, session_creds

PASSWORD = "Initial-Passw0rd!"
NEW_PASSWORD = "Changed-Passw0rd!"
PATH = "/team-a/"
LIST_USERS = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]}
)


def mfa_policy(path: str, deny: bool = True) -> str:
    """AWS's documented "manage your own credentials; nothing else without MFA" policy, as
    the operator renders it for a path (`deny=False`: the self-service variant)."""
    own = f"arn:aws:iam::*:user{path}${{aws:username}}"
    statements: list[dict[str, Any]] = [
        {"Sid": "AllowViewAccountInfo", "Effect": "Allow", "Action": ["iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices"], "Resource": "*"},
        {"Sid": "AllowManageOwnPasswords", "Effect": "Allow", "Action": ["iam:ChangePassword", "iam:GetUser", "iam:GetLoginProfile"], "Resource": own},
        {"Sid": "AllowManageOwnAccessKeys", "Effect": "Allow", "Action": ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys", "iam:UpdateAccessKey", "iam:GetAccessKeyLastUsed"], "Resource": own},
        {"Sid": "AllowManageOwnVirtualMFADevice", "Effect": "Allow", "Action": ["iam:CreateVirtualMFADevice"], "Resource": "arn:aws:iam::*:mfa/*"},
        {"Sid": "AllowManageOwnUserMFA", "Effect": "Allow", "Action": ["iam:DeactivateMFADevice", "iam:EnableMFADevice", "iam:GetMFADevice", "iam:ListMFADevices", "iam:ResyncMFADevice"], "Resource": own},
    ]
    if deny:
        statements.append(
            {
                "Sid": "DenyAllExceptListedIfNoMFA",
                "Effect": "Deny",
                "NotAction": [
                    "iam:ChangePassword", "iam:CreateVirtualMFADevice", "iam:EnableMFADevice",
                    "iam:GetAccountPasswordPolicy", "iam:GetMFADevice", "iam:GetUser", "iam:ListMFADevices",
                    "iam:ListVirtualMFADevices", "iam:ResyncMFADevice", "sts:GetSessionToken",
                ],
                "Resource": "*",
                "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))


class Mfa:
    """The world of test_strict_sts (admin `op` signs) plus the two policies for /team-a/."""

    def __init__(self) -> None:
        self.w = World()
        iam = self.w.iam
        self.required = iam.create_policy(PolicyName="mfa-required", Path=PATH, PolicyDocument=mfa_policy(PATH))["Policy"]["Arn"]
        self.self_service = iam.create_policy(
            PolicyName="mfa-self-service", Path=PATH, PolicyDocument=mfa_policy(PATH, deny=False)
        )["Policy"]["Arn"]

    def user(self, name: str, *policy_arns: str, inline: str | None = LIST_USERS) -> tuple[str, str, None]:
        """A console user under /team-a/ with those managed policies (and ListUsers inline);
        its long-term key."""
        iam = self.w.iam
        iam.create_user(UserName=name, Path=PATH)
        iam.create_login_profile(UserName=name, Password=PASSWORD)
        for arn in policy_arns:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        if inline:
            iam.put_user_policy(UserName=name, PolicyName="list-users", PolicyDocument=inline)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"], None

    def device(self, name: str) -> tuple[str, bytes]:
        """A virtual MFA device enabled on `name` by the admin: (serial, seed)."""
        out = self.w.iam.create_virtual_mfa_device(VirtualMFADeviceName=name, Path=PATH)["VirtualMFADevice"]
        serial, seed = out["SerialNumber"], out["Base32StringSeed"]
        self.w.iam.enable_mfa_device(
            UserName=name, SerialNumber=serial, AuthenticationCode1=totp(seed, time.time() - 30), AuthenticationCode2=totp(seed)
        )
        return serial, seed

    def iam(self, creds: tuple[str, str, str | None]) -> Any:
        return self.w.client("iam", creds)

    def sts(self, creds: tuple[str, str, str | None]) -> Any:
        return self.w.client("sts", creds)


@pytest.fixture(scope="module")
def mfa() -> Iterator[Mfa]:
    m = Mfa()
    yield m
    m.w.emu.stop()


def refused(code: str, call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    got, _, message = error_of(exc)
    assert got == code, message
    return message


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user{PATH}{name}"


def wrong_code(seed: bytes) -> str:
    """A 6-digit code that is none of the device's codes around now."""
    now = time.time()
    near = {totp(seed, now + 30 * step) for step in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in near)


# ---------------------------------------------------------------- TOTP


def test_totp_follows_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1 seed "12345678901234567890": 94287082 at T=59 and
    # 07081804 at T=1111111109 (8 digits; IAM uses the last 6).
    seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert totp(seed, 59) == "287082"
    assert totp(seed.encode(), 1111111109) == "081804"
    assert strict_mfa.totp_valid(seed, "287082", at=59 + 30)  # the previous step
    assert not strict_mfa.totp_valid(seed, "287082", at=59 + 60)


# ---------------------------------------------------------------- the documented policy


def test_mfa_required_user_manages_its_own_mfa_then_works_with_an_mfa_session(mfa: Mfa) -> None:
    creds = mfa.user("alice", mfa.required)
    mfa.user("bob")
    alice = mfa.iam(creds)

    # Without MFA, even the ListUsers its other policy allows is denied (the Deny).
    message = refused("AccessDenied", alice.list_users)
    assert message.startswith(f"User: {user_arn('alice')} is not authorized to perform: iam:ListUsers"), message
    assert "explicit deny" in message

    # What the Deny leaves: its own password, a virtual MFA device enabled on itself.
    alice.change_password(OldPassword=PASSWORD, NewPassword=NEW_PASSWORD)
    refused("AccessDenied", alice.change_password, OldPassword=PASSWORD, NewPassword="Another-Passw0rd!")
    assert alice.get_user()["User"]["Arn"] == user_arn("alice")
    assert alice.get_user(UserName="alice")["User"]["UserName"] == "alice"
    device = alice.create_virtual_mfa_device(VirtualMFADeviceName="alice", Path=PATH)["VirtualMFADevice"]
    serial, seed = device["SerialNumber"], device["Base32StringSeed"]
    assert serial == f"arn:aws:iam::{ACCOUNT}:mfa{PATH}alice"
    alice.enable_mfa_device(
        UserName="alice", SerialNumber=serial, AuthenticationCode1=totp(seed, time.time() - 30), AuthenticationCode2=totp(seed)
    )
    assert [d["SerialNumber"] for d in alice.list_mfa_devices(UserName="alice")["MFADevices"]] == [serial]
    assert [d["SerialNumber"] for d in alice.list_mfa_devices()["MFADevices"]] == [serial]

    # Not on another user.
    other = mfa.w.iam.create_virtual_mfa_device(VirtualMFADeviceName="for-bob", Path=PATH)["VirtualMFADevice"]
    refused(
        "AccessDenied",
        alice.enable_mfa_device,
        UserName="bob",
        SerialNumber=other["SerialNumber"],
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    assert mfa.w.iam.list_mfa_devices(UserName="bob")["MFADevices"] == []
    refused("AccessDenied", alice.list_mfa_devices, UserName="bob")
    refused("AccessDenied", alice.get_user, UserName="bob")
    # Nor its own access keys without MFA: the Deny does not list them.
    refused("AccessDenied", alice.list_access_keys)

    # An MFA session: the user, MFA-authenticated.
    out = mfa.sts(creds).get_session_token(SerialNumber=serial, TokenCode=totp(seed), DurationSeconds=900)
    session = session_creds(out)
    assert session[0].startswith("ASIA") and session[0] != creds[0]
    assert mfa.sts(session).get_caller_identity()["Arn"] == user_arn("alice")
    with_mfa = mfa.iam(session)
    assert [u["UserName"] for u in with_mfa.list_users()["Users"]].count("alice") == 1
    assert with_mfa.list_access_keys()["AccessKeyMetadata"][0]["AccessKeyId"] == creds[0]
    # ... still only its own user: the Allows are scoped to ${aws:username}.
    refused("AccessDenied", with_mfa.list_mfa_devices, UserName="bob")
    # The long-term key is still refused.
    refused("AccessDenied", alice.list_users)


def test_a_session_without_mfa_is_not_mfa_authenticated(mfa: Mfa) -> None:
    creds = mfa.user("frank", mfa.required)
    plain = session_creds(mfa.sts(creds).get_session_token())
    assert mfa.sts(plain).get_caller_identity()["Arn"] == user_arn("frank")
    # IAM refuses GetSessionToken credentials obtained without MFA, whatever the policy.
    refused("AccessDenied", mfa.iam(plain).list_users)
    refused("AccessDenied", mfa.iam(plain).get_user)
    # Session credentials cannot get another session.
    message = refused("AccessDenied", mfa.sts(plain).get_session_token)
    assert message == "Cannot call GetSessionToken with session credentials"


def test_a_wrong_code_or_another_users_device_is_refused(mfa: Mfa) -> None:
    creds = mfa.user("grace", mfa.required)
    mfa.user("heidi")
    serial, seed = mfa.device("grace")
    other_serial, other_seed = mfa.device("heidi")
    sts = mfa.sts(creds)

    message = refused("AccessDenied", sts.get_session_token, SerialNumber=serial, TokenCode=wrong_code(seed))
    assert message == strict_mfa.INVALID_CODE
    # Heidi's device with a valid code of Heidi's seed: not Grace's device.
    message = refused("AccessDenied", sts.get_session_token, SerialNumber=other_serial, TokenCode=totp(other_seed))
    assert message == strict_mfa.UNKNOWN_DEVICE
    # A device not enabled on anyone.
    spare = mfa.w.iam.create_virtual_mfa_device(VirtualMFADeviceName="spare", Path=PATH)["VirtualMFADevice"]
    refused("AccessDenied", sts.get_session_token, SerialNumber=spare["SerialNumber"], TokenCode=totp(spare["Base32StringSeed"]))
    refused("ValidationError", sts.get_session_token, SerialNumber=serial, TokenCode="12345")
    # The code of the previous step is still accepted (clock skew), as by IAM.
    sts.get_session_token(SerialNumber=serial, TokenCode=totp(seed, time.time() - 30))


def test_session_duration_token_and_expiry(mfa: Mfa) -> None:
    creds = mfa.user("ivan", mfa.required)
    serial, seed = mfa.device("ivan")
    sts = mfa.sts(creds)
    refused("ValidationError", sts.get_session_token, DurationSeconds=899)
    refused("ValidationError", sts.get_session_token, DurationSeconds=129601)
    before = datetime.datetime.now(datetime.timezone.utc)
    out = sts.get_session_token(SerialNumber=serial, TokenCode=totp(seed))
    assert abs((out["Credentials"]["Expiration"] - before).total_seconds() - 43200) < 30
    key_id, secret, token = session_creds(out)
    mfa.iam((key_id, secret, token)).list_users()
    # The key signs only with its own session token.
    for wrong in [None, "not-the-token"]:
        refused("InvalidClientTokenId", mfa.iam((key_id, secret, wrong)).list_users)
    # Expired: STS's ExpiredToken.
    status, _ = mfa.w.emu.control("POST", "/_emulator/age-session", {"accessKeyId": key_id, "seconds": 43201})
    assert status == 200
    refused("ExpiredToken", mfa.iam((key_id, secret, token)).list_users)
    refused("ExpiredToken", mfa.sts((key_id, secret, token)).get_caller_identity)


# ---------------------------------------------------------------- evaluation


def test_conditions_that_do_not_hold_neither_allow_nor_deny(mfa: Mfa) -> None:
    # A user without the MFA policy is not blocked by it.
    judy = mfa.iam(mfa.user("judy"))
    assert judy.list_users()["Users"]
    # An Allow whose condition fails is not a deny (moto made it one): ListUsers is still
    # allowed by the other policy, and the conditioned Allow grants nothing.
    conditioned = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iam:*", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}
            ],
        }
    )
    arn = mfa.w.iam.create_policy(PolicyName="only-with-mfa", PolicyDocument=conditioned)["Policy"]["Arn"]
    karl = mfa.iam(mfa.user("karl", arn))
    assert karl.list_users()["Users"]
    refused("AccessDenied", karl.list_groups)
    # A long-term key has no aws:MultiFactorAuthPresent at all: `Bool ... false` (without
    # IfExists) does not match it, only `BoolIfExists` does.
    deny_without = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["iam:ListUsers", "iam:ListGroups"], "Resource": "*"},
                {"Effect": "Deny", "Action": "iam:ListGroups", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}},
            ],
        }
    )
    arn = mfa.w.iam.create_policy(PolicyName="deny-if-false", PolicyDocument=deny_without)["Policy"]["Arn"]
    olga = mfa.iam(mfa.user("olga", arn, inline=None))
    assert olga.list_groups()["Groups"] == []


def test_self_service_manages_own_keys_without_mfa_but_not_another_users(mfa: Mfa) -> None:
    creds = mfa.user("lena", mfa.self_service, inline=None)
    mfa.user("mike")
    lena = mfa.iam(creds)
    created = lena.create_access_key()["AccessKey"]
    assert created["UserName"] == "lena"
    keys = {k["AccessKeyId"] for k in lena.list_access_keys(UserName="lena")["AccessKeyMetadata"]}
    assert keys == {creds[0], created["AccessKeyId"]}
    lena.delete_access_key(UserName="lena", AccessKeyId=created["AccessKeyId"])
    lena.change_password(OldPassword=PASSWORD, NewPassword=NEW_PASSWORD)
    refused("AccessDenied", lena.create_access_key, UserName="mike")
    refused("AccessDenied", lena.list_access_keys, UserName="mike")
    assert len(mfa.w.iam.list_access_keys(UserName="mike")["AccessKeyMetadata"]) == 1
    # Nothing beyond its own credentials is granted.
    refused("AccessDenied", lena.list_users)


def test_change_password_checks_the_password_policy(mfa: Mfa) -> None:
    nina = mfa.iam(mfa.user("nina", mfa.required))
    refused("PasswordPolicyViolation", nina.change_password, OldPassword=PASSWORD, NewPassword="short")
    mfa.w.iam.update_login_profile(UserName="nina", PasswordResetRequired=True)
    nina.change_password(OldPassword=PASSWORD, NewPassword=NEW_PASSWORD)
    # A changed password ends the required reset.
    assert mfa.w.iam.get_login_profile(UserName="nina")["LoginProfile"]["PasswordResetRequired"] is False


def test_assume_role_requiring_mfa_with_an_mfa_session(mfa: Mfa) -> None:
    assume = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    )
    role = mfa.w.role(
        "needs-mfa",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": ACCOUNT},
                        "Action": "sts:AssumeRole",
                        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
                    }
                ],
            }
        ),
    )
    # A user under the MFA policy (evaluated as IAM does): denied with its long-term key
    # (the Deny), allowed with an MFA session (identity policies and the trust's condition).
    creds = mfa.user("oscar", mfa.required, inline=assume)
    serial, seed = mfa.device("oscar")
    refused("AccessDenied", mfa.sts(creds).assume_role, RoleArn=role, RoleSessionName="s1")
    session = session_creds(mfa.sts(creds).get_session_token(SerialNumber=serial, TokenCode=totp(seed)))
    out = mfa.sts(session).assume_role(RoleArn=role, RoleSessionName="s1")
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/needs-mfa/s1"
    # A user whose policies keep moto's evaluation: the trust sees the session's MFA too.
    plain_creds = mfa.user("peggy", inline=assume)
    serial, seed = mfa.device("peggy")
    refused("AccessDenied", mfa.sts(plain_creds).assume_role, RoleArn=role, RoleSessionName="s1")
    no_mfa = session_creds(mfa.sts(plain_creds).get_session_token())
    refused("AccessDenied", mfa.sts(no_mfa).assume_role, RoleArn=role, RoleSessionName="s1")
    with_mfa = session_creds(mfa.sts(plain_creds).get_session_token(SerialNumber=serial, TokenCode=totp(seed)))
    mfa.sts(with_mfa).assume_role(RoleArn=role, RoleSessionName="s1")
