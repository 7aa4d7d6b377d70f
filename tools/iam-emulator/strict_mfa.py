"""MFA sessions and IAM's evaluation of MFA-aware identity policies, on top of moto 5.2.5.

moto's `sts:GetSessionToken` answers with fixed example credentials that nothing
accepts, and checks no MFA code. Its policy evaluation (`moto/iam/access_control.py`)
authorizes IAM calls on users against the resource `*`, knows no policy variables
(`${aws:username}`), passes no request context to conditions, and turns an `Allow` or
`Deny` whose condition fails into an explicit deny. AWS's documented policy "allow
MFA-authenticated IAM users to manage their own credentials" therefore denies everything,
with or without MFA.

Here (README.md, "MFA sessions and self-service policies"):

- `GetSessionToken` signed by an IAM user's access key issues session credentials
  (ASIA...) that authenticate later requests as that user, MFA-authenticated when a
  `SerialNumber` of a device enabled on that user and a valid TOTP `TokenCode` were given;
- requests signed by a user whose policies use what only IAM's evaluation can express (a
  condition key or policy variable listed in `CONTEXT_KEYS`) are evaluated as IAM does;
  every other principal keeps moto's evaluation, which other tests describe and rely on
  (`ChangePassword`, which moto lacks, is in strict_iam.py).

`totp()` needs only the standard library, and importing this module does not import moto,
so other tests can compute a code with `python -c 'import strict_mfa; ...'`.
"""

from __future__ import annotations

import base64
import contextvars
import datetime
import hashlib
import hmac
import json
import re
import secrets
import string
import struct
import time
from dataclasses import dataclass
from typing import Any

# RFC 6238 as authenticator apps and IAM use it: HMAC-SHA1, 6 digits, 30-second steps.
TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6
# Codes of the adjacent steps are accepted too (clock skew), as IAM does.
TOTP_WINDOW = 1

# GetSessionToken's DurationSeconds for IAM users (STS API reference): 15 minutes to
# 36 hours, 12 hours by default.
MIN_SESSION_SECONDS = 900
MAX_SESSION_SECONDS = 129600
DEFAULT_SESSION_SECONDS = 43200

# STS's wording for a wrong one-time code, and for a device that is not the caller's.
INVALID_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
UNKNOWN_DEVICE = (
    "MultiFactorAuthentication failed, unable to validate MFA code. "
    "Please verify your MFA serial number is valid and associated with this user."
)

# The request context keys the emulator supplies for a request signed by an IAM user
# (lower case: keys are case-insensitive). A statement conditioned on any other key, or
# with an operator strict_sts does not evaluate, keeps moto's evaluation.
CONTEXT_KEYS = {
    "aws:multifactorauthpresent",
    "aws:username",
    "aws:userid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principaltype",
}

# IAM actions whose resource is a user: the `UserName` parameter's user, or the caller
# when the parameter is absent (IAM: "If you do not specify a user name, IAM determines
# the user name implicitly based on the AWS access key ID used to sign the request").
USER_ACTIONS = {
    "AttachUserPolicy",
    "ChangePassword",
    "CreateAccessKey",
    "CreateLoginProfile",
    "CreateServiceSpecificCredential",
    "CreateUser",
    "DeactivateMFADevice",
    "DeleteAccessKey",
    "DeleteLoginProfile",
    "DeleteServiceSpecificCredential",
    "DeleteSigningCertificate",
    "DeleteSSHPublicKey",
    "DeleteUser",
    "DeleteUserPermissionsBoundary",
    "DeleteUserPolicy",
    "DetachUserPolicy",
    "EnableMFADevice",
    "GetAccessKeyLastUsed",
    "GetLoginProfile",
    "GetMFADevice",
    "GetSSHPublicKey",
    "GetUser",
    "GetUserPolicy",
    "ListAccessKeys",
    "ListAttachedUserPolicies",
    "ListGroupsForUser",
    "ListMFADevices",
    "ListServiceSpecificCredentials",
    "ListSigningCertificates",
    "ListSSHPublicKeys",
    "ListUserPolicies",
    "ListUserTags",
    "PutUserPermissionsBoundary",
    "PutUserPolicy",
    "ResetServiceSpecificCredential",
    "ResyncMFADevice",
    "TagUser",
    "UntagUser",
    "UpdateAccessKey",
    "UpdateLoginProfile",
    "UpdateServiceSpecificCredential",
    "UpdateSigningCertificate",
    "UpdateSSHPublicKey",
    "UpdateUser",
    "UploadSigningCertificate",
    "UploadSSHPublicKey",
}

# Of those, the ones whose `UserName` is optional: moto is given the caller's name.
SELF_ACTIONS = {
    "CreateAccessKey",
    "DeleteAccessKey",
    "GetLoginProfile",
    "GetUser",
    "ListAccessKeys",
    "ListMFADevices",
    "ListServiceSpecificCredentials",
    "ListSigningCertificates",
    "ListSSHPublicKeys",
    "UpdateAccessKey",
}

_INSTALLED = False
# The access-key class of user sessions (defined at install: it subclasses moto's).
_SESSION_KEY_CLASS: Any = None


# --------------------------------------------------------------------------
# TOTP (standard library only).
# --------------------------------------------------------------------------


def _seed_bytes(seed_b32: str | bytes) -> bytes:
    text = seed_b32.decode() if isinstance(seed_b32, bytes) else seed_b32
    text = text.strip().replace(" ", "").upper().rstrip("=")
    return base64.b32decode(text + "=" * (-len(text) % 8))


def totp(seed_b32: str | bytes, at: float | None = None) -> str:
    """The 6-digit RFC 6238 code (HMAC-SHA1, 30 s) of a virtual MFA device's
    `Base32StringSeed` (str, or the bytes boto3 returns) at unix time `at` (default now)."""
    counter = int((time.time() if at is None else at) // TOTP_STEP_SECONDS)
    return _hotp(_seed_bytes(seed_b32), counter)


def _hotp(key: bytes, counter: int) -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**TOTP_DIGITS
    return f"{value:0{TOTP_DIGITS}d}"


def totp_valid(seed_b32: str | bytes, code: str, at: float | None = None) -> bool:
    """Whether `code` is the device's code of the current step or an adjacent one."""
    counter = int((time.time() if at is None else at) // TOTP_STEP_SECONDS)
    key = _seed_bytes(seed_b32)
    return any(
        hmac.compare_digest(_hotp(key, counter + delta), code)
        for delta in range(-TOTP_WINDOW, TOTP_WINDOW + 1)
    )


# --------------------------------------------------------------------------
# User sessions (GetSessionToken).
# --------------------------------------------------------------------------


@dataclass
class UserSession:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime.datetime
    account_id: str
    partition: str
    user_name: str
    mfa: bool


def _sessions(account_id: str, partition: str) -> list[UserSession]:
    """The user sessions of an account, kept on moto's STS backend so that a reset
    (which re-initialises every backend) drops them."""
    from moto.sts.models import sts_backends

    backend = sts_backends[account_id][partition]
    found = backend.__dict__.get("user_sessions")
    if found is None:
        found = backend.__dict__["user_sessions"] = []
    return found


def session_of(access_key_id: str | None) -> UserSession | None:
    if not access_key_id or not access_key_id.startswith("ASIA"):
        return None
    from moto.sts.models import sts_backends

    for account in list(dict.keys(sts_backends)):
        for partition in list(dict.keys(sts_backends[account])):
            backend = dict.__getitem__(sts_backends[account], partition)
            for session in backend.__dict__.get("user_sessions") or []:
                if session.access_key_id == access_key_id:
                    return session
    return None


def age_session(access_key_id: str, seconds: float) -> bool:
    """Moves a user session's expiry back (test control `/_emulator/age-session`)."""
    session = session_of(access_key_id)
    if session is None:
        return False
    session.expiration = session.expiration - datetime.timedelta(seconds=seconds)
    return True


def _iam_backend(account_id: str, partition: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id][partition]


def _find_user(backend: Any, name: str | None) -> Any | None:
    if not name:
        return None
    user = backend.users.get(name)
    if user is not None:
        return user
    lowered = name.lower()
    return next((u for n, u in backend.users.items() if n.lower() == lowered), None)


def _session_user(session: UserSession) -> Any | None:
    return _find_user(_iam_backend(session.account_id, session.partition), session.user_name)


def _access_denied(message: str) -> Exception:
    from moto.core.exceptions import AccessDeniedError, _RESTError

    err = AccessDeniedError(user_arn="", action="")
    _RESTError.__init__(err, "AccessDenied", message)
    return err


def _model_error(value: Any, member: str, constraint: str) -> str:
    return (
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must {constraint}"
    )


def _random_key_id() -> str:
    return "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _random_secret() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits + "+/") for _ in range(40))


def _patch_get_session_token() -> None:
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sts import responses as sts_responses
    from moto.sts.exceptions import STSValidationError
    from moto.sts.utils import random_session_token

    TokenResponse = sts_responses.TokenResponse
    orig = TokenResponse.get_session_token

    def get_session_token(self: Any) -> Any:
        key_id = self.get_access_key()
        if session_of(key_id) is not None:
            raise _access_denied("Cannot call GetSessionToken with session credentials")
        backend = _iam_backend(self.current_account, self.partition)
        user = backend.get_user_from_access_key_id(key_id)
        if user is None:
            # Not an IAM user's key (authentication not enforced, e.g. the tests' fixed
            # key): moto's answer, fixed example credentials.
            return orig(self)
        raw = self._get_param("DurationSeconds")
        try:
            seconds = DEFAULT_SESSION_SECONDS if raw is None else int(raw)
        except (TypeError, ValueError):
            raise STSValidationError(_model_error(raw, "durationSeconds", "be a number"))
        if seconds < MIN_SESSION_SECONDS:
            raise STSValidationError(
                _model_error(raw, "durationSeconds", f"have value greater than or equal to {MIN_SESSION_SECONDS}")
            )
        if seconds > MAX_SESSION_SECONDS:
            raise STSValidationError(
                _model_error(raw, "durationSeconds", f"have value less than or equal to {MAX_SESSION_SECONDS}")
            )
        serial = self._get_param("SerialNumber")
        code = self._get_param("TokenCode")
        mfa = serial is not None or code is not None
        if mfa:
            if code is None or not re.fullmatch(r"\d{6}", str(code)):
                raise STSValidationError(
                    _model_error(code, "tokenCode", r"satisfy regular expression pattern: [\d]{6}")
                )
            if serial is None or serial not in user.mfa_devices:
                raise _access_denied(UNKNOWN_DEVICE)
            # A virtual device's seed is on moto's VirtualMfaDevice; a device enabled
            # without one (any serial moto accepted) has no code the emulator can check.
            device = backend.virtual_mfa_devices.get(serial)
            if device is None or not totp_valid(device.base32_string_seed, str(code)):
                raise _access_denied(INVALID_CODE)
        session = UserSession(
            access_key_id=_random_key_id(),
            secret_access_key=_random_secret(),
            session_token=random_session_token(),
            expiration=utcnow() + datetime.timedelta(seconds=seconds),
            account_id=user.account_id,
            partition=self.partition,
            user_name=user.name,
            mfa=mfa,
        )
        _sessions(session.account_id, session.partition).append(session)
        return ActionResult(
            {
                "Credentials": {
                    "AccessKeyId": session.access_key_id,
                    "SecretAccessKey": session.secret_access_key,
                    "SessionToken": session.session_token,
                    "Expiration": session.expiration,
                }
            }
        )

    TokenResponse.get_session_token = get_session_token


def _patch_caller_lookup() -> None:
    """A session's key id names its user wherever moto asks which user signed a request
    (`GetCallerIdentity`, `GetUser` without a name, ...)."""
    from moto.iam.models import IAMBackend

    orig = IAMBackend.get_user_from_access_key_id

    def get_user_from_access_key_id(self: Any, access_key_id: str) -> Any:
        user = orig(self, access_key_id)
        if user is not None:
            return user
        session = session_of(access_key_id)
        if session is None or session.account_id != self.account_id:
            return None
        return _find_user(self, session.user_name)

    IAMBackend.get_user_from_access_key_id = get_user_from_access_key_id


def _patch_self_user_name() -> None:
    """Actions whose `UserName` is optional act on the caller when it is absent, whether
    the caller signs with a long-term key or a session (moto looks only at long-term keys,
    and not at all for ListMFADevices)."""
    from moto.iam import responses as iam_responses

    IamResponse = iam_responses.IamResponse
    orig = IamResponse._get_param

    def _get_param(self: Any, param_name: str, if_none: Any = None) -> Any:
        value = orig(self, param_name, if_none)
        if param_name == "UserName" and not value and self._get_action() in SELF_ACTIONS:
            user = self.backend.get_user_from_access_key_id(self.get_access_key())
            if user is not None:
                return user.name
        return value

    IamResponse._get_param = _get_param


# --------------------------------------------------------------------------
# Authentication of session keys.
# --------------------------------------------------------------------------


def _patch_authentication() -> None:
    global _SESSION_KEY_CLASS
    from botocore.credentials import Credentials

    from moto.core.utils import utcnow
    from moto.iam import access_control

    import strict_sts

    class UserSessionAccessKey(access_control.IAMUserAccessKey):
        """A user's session credentials: they sign as the user (same policies), with the
        session's MFA state."""

        def __init__(self, account_id: str, partition: str, session: UserSession, headers: Any) -> None:
            self.account_id = session.account_id
            self.partition = session.partition
            if headers.get("X-Amz-Security-Token") != session.session_token:
                raise access_control.CreateAccessKeyFailure(reason="InvalidToken")
            if session.expiration <= utcnow():
                raise strict_sts.ExpiredTokenError()
            user = _session_user(session)
            if user is None:  # the user was deleted
                raise access_control.CreateAccessKeyFailure(reason="InvalidId")
            self._owner_user_name = user.name
            self._access_key_id = session.access_key_id
            self._secret_access_key = session.secret_access_key
            self._session_token = session.session_token
            self.session = session

        def create_credentials(self) -> Credentials:
            return Credentials(self._access_key_id, self._secret_access_key, self._session_token)

    orig = access_control.create_access_key

    def create_access_key(account_id: str, partition: str, access_key_id: str, headers: Any) -> Any:
        session = session_of(access_key_id)
        if session is not None:
            return UserSessionAccessKey(account_id, partition, session, headers)
        return orig(account_id=account_id, partition=partition, access_key_id=access_key_id, headers=headers)

    access_control.create_access_key = create_access_key
    _SESSION_KEY_CLASS = UserSessionAccessKey


# --------------------------------------------------------------------------
# Identity-policy evaluation for requests signed by IAM users.
# --------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    return [s for s in _values(document.get("Statement", [])) if isinstance(s, dict)]


def _document(policy: Any) -> Any:
    """The JSON of one of moto's collected policies (managed: default version; inline:
    its document)."""
    if isinstance(policy, str):
        text = policy
    elif isinstance(policy, dict):
        text = policy.get("policy_document", "")
    else:
        text = next((v.document for v in policy.versions if v.is_default), "")
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _known_conditions(statement: dict[str, Any]) -> bool:
    """Whether every operator and key of the statement's Condition is one evaluated here."""
    import strict_sts

    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict):
        return False
    for operator, keys in condition.items():
        base = operator[: -len("IfExists")] if operator.endswith("IfExists") else operator
        if base not in strict_sts._OPERATORS or not isinstance(keys, dict):
            return False
        if any(str(key).lower() not in CONTEXT_KEYS for key in keys):
            return False
    return True


def _uses_request_context(statement: dict[str, Any]) -> bool:
    """Whether the statement means something only with IAM's request context: a condition
    on a key listed in CONTEXT_KEYS, or a policy variable in its resources."""
    if statement.get("Condition") and _known_conditions(statement):
        return True
    resources = _values(statement.get("Resource", [])) + _values(statement.get("NotResource", []))
    return any(isinstance(r, str) and "${" in r for r in resources)


def _substitute(pattern: str, context: dict[str, str]) -> str | None:
    """A resource pattern with its policy variables replaced; None when one is not in the
    request context (IAM: the element then does not match)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        key = match.group(1).lower()
        found = next((v for k, v in context.items() if k.lower() == key), None)
        if found is None:
            missing = True
            return ""
        return found

    out = _VARIABLE.sub(value, pattern)
    return None if missing else out


def _resource_matches(statement: dict[str, Any], resource: str, context: dict[str, str]) -> bool:
    import strict_sts

    def matches(pattern: Any) -> bool:
        if not isinstance(pattern, str):
            return False
        filled = _substitute(pattern, context)
        return filled is not None and strict_sts._like(filled, resource)

    if "NotResource" in statement:
        return not any(matches(p) for p in _values(statement["NotResource"]))
    return any(matches(p) for p in _values(statement.get("Resource", [])))


def evaluate_statement(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> str:
    """IAM's evaluation of one identity-policy statement: "Allow" or "Deny" when action,
    resource and conditions all match, else "" (it does not apply: neither grants nor
    denies, whatever its effect)."""
    import strict_sts

    if not strict_sts._action_matches(statement, action):
        return ""
    if not _resource_matches(statement, resource, context):
        return ""
    if not strict_sts._conditions_hold(statement, context):
        return ""
    effect = statement.get("Effect")
    return effect if effect in ("Allow", "Deny") else ""


def _param(data: Any, name: str) -> str | None:
    value = data.get(name) if hasattr(data, "get") else None
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def request_resource(request: Any, user: Any, moto_resource: str) -> str:
    """The resource ARN IAM authorizes an action on, for the actions modelled here; moto's
    own resource for the others."""
    service, _, action = request._action.partition(":")
    if service != "iam":
        return moto_resource
    account = request.account_id
    partition = request._access_key.partition
    if action in USER_ACTIONS:
        name = _param(request._data, "UserName")
        if action == "GetAccessKeyLastUsed":
            # The key's owner, whoever signs.
            owner = request.backend.get_user_from_access_key_id(_param(request._data, "AccessKeyId") or "")
            return owner.arn if owner is not None else f"arn:{partition}:iam::{account}:user/*"
        if name is None:
            return user.arn
        found = _find_user(request.backend, name)
        if found is not None:
            return found.arn
        path = _param(request._data, "Path") or "/"
        return f"arn:{partition}:iam::{account}:user{path}{name}"
    if action == "CreateVirtualMFADevice":
        path = _param(request._data, "Path") or "/"
        name = _param(request._data, "VirtualMFADeviceName") or ""
        return f"arn:{partition}:iam::{account}:mfa{path}{name}"
    if action == "DeleteVirtualMFADevice":
        return _param(request._data, "SerialNumber") or moto_resource
    return moto_resource


def identity_verdict(statements: list[dict[str, Any]], action: str, target: str, moto_resource: str, context: dict[str, str]) -> str:
    """IAM's combination of a principal's identity-policy statements: "Deny" if one
    applies, else "Allow" if one applies, else "" (implicitly denied). A statement with a
    condition the emulator cannot evaluate gets moto's verdict (against moto's resource)."""
    from moto.iam import access_control

    allowed = False
    for statement in statements:
        if _known_conditions(statement):
            result = evaluate_statement(statement, action, target, context)
        else:
            verdict = access_control.IAMPolicyStatement(statement).is_action_permitted(action, moto_resource)
            result = {
                access_control.PermissionResult.PERMITTED: "Allow",
                access_control.PermissionResult.DENIED: "Deny",
            }.get(verdict, "")
        if result == "Deny":
            return "Deny"
        allowed = allowed or result == "Allow"
    return "Allow" if allowed else ""


# aws:MultiFactorAuthPresent of the user session calling sts:AssumeRole, for the trust
# evaluation of strict_sts (which otherwise says "false" for every caller).
_TRUST_MFA: contextvars.ContextVar[str | None] = contextvars.ContextVar("trust_mfa", default=None)


def _patch_trust_context() -> None:
    import strict_sts

    orig = strict_sts.trust_allows

    def trust_allows(document: str, callers: set[str], account: str, context: dict[str, str]) -> bool:
        mfa = _TRUST_MFA.get()
        if mfa is not None:
            context = {**context, "aws:MultiFactorAuthPresent": mfa}
        return orig(document, callers, account, context)

    strict_sts.trust_allows = trust_allows


def _patch_evaluation() -> None:
    from moto.iam import access_control

    import strict_sts

    IAMRequestBase = access_control.IAMRequestBase
    orig_check = IAMRequestBase.check_action_permitted

    def refuse(request: Any, user_arn: str, resource: str, reason: str) -> None:
        raise _access_denied(
            f"User: {user_arn} is not authorized to perform: {request._action} on resource: {resource} {reason}"
        )

    def check_action_permitted(self: Any, resource: str) -> None:
        key = self._access_key
        if not isinstance(key, access_control.IAMUserAccessKey):
            return orig_check(self, resource)  # role sessions: unchanged
        # "No permissions are required for a user to get a session token ... You cannot use
        # policies to control authentication operations." (IAM user guide)
        if self._action == "sts:GetSessionToken":
            return None
        session: UserSession | None = getattr(key, "session", None)
        user = _find_user(self.backend, key._owner_user_name)
        user_arn = user.arn if user is not None else key.arn
        if session is not None and not session.mfa:
            # GetSessionToken credentials "cannot call IAM API operations unless MFA
            # authentication information is included in the request" and "cannot call AWS
            # STS API operations except AssumeRole or GetCallerIdentity" (IAM user guide).
            if self._service == "iam" or self._action not in ("sts:AssumeRole", "sts:GetCallerIdentity"):
                raise _access_denied(
                    f"User: {user_arn} is not authorized to perform: {self._action}: "
                    "session credentials obtained without MFA cannot call IAM or this STS API"
                )
        if self._action == "sts:GetCallerIdentity" or user is None:
            return orig_check(self, resource)
        documents = [_document(p) for p in key.collect_policies()]
        statements = [s for d in documents for s in _statements(d)]
        iam_evaluated = any(_uses_request_context(s) for s in statements)
        mfa = None if session is None else ("true" if session.mfa else "false")
        if self._action == "sts:AssumeRole":
            token = _TRUST_MFA.set(mfa)
            try:
                if not iam_evaluated:
                    return orig_check(self, resource)  # strict_sts, with the session's MFA
                return assume_role(self, key, user, statements, resource, mfa)
            finally:
                _TRUST_MFA.reset(token)
        if not iam_evaluated:
            # A principal whose policies need no request context keeps moto's evaluation
            # (tests/iam_policy.rs describes and relies on it for the operator's policies).
            return orig_check(self, resource)
        target = request_resource(self, user, resource)
        verdict = identity_verdict(statements, self._action, target, resource, _context(user, mfa))
        if verdict == "Deny":
            refuse(self, user_arn, target, "with an explicit deny in an identity-based policy")
        if verdict != "Allow":
            refuse(self, user_arn, target, f"because no identity-based policy allows the {self._action} action")
        return None

    def assume_role(self: Any, key: Any, user: Any, statements: list[dict[str, Any]], role_arn: str, mfa: str | None) -> None:
        """strict_sts's AssumeRole checks (the role exists, the identity policies allow it,
        the trust does), with the identity policies evaluated as IAM does."""
        role = strict_sts.find_role(role_arn)
        verdict = identity_verdict(statements, self._action, role_arn, role_arn, _context(user, mfa))
        if role is None or verdict != "Allow":
            raise strict_sts.AssumeRoleDenied(key.arn, role_arn)
        context = {"aws:MultiFactorAuthPresent": mfa or "false", "aws:PrincipalAccount": self.account_id}
        external = _param(self._data, "ExternalId")
        if external is not None:
            context["sts:ExternalId"] = external
        if not strict_sts.trust_allows(
            role.assume_role_policy_document, strict_sts.caller_principals(key), self.account_id, context
        ):
            raise strict_sts.AssumeRoleDenied(key.arn, role_arn)

    IAMRequestBase.check_action_permitted = check_action_permitted


def _context(user: Any, mfa: str | None) -> dict[str, str]:
    """The request context of a request signed by `user`."""
    context = {
        "aws:username": user.name,
        "aws:userid": user.id,
        "aws:PrincipalAccount": user.account_id,
        "aws:PrincipalArn": user.arn,
        "aws:PrincipalType": "User",
    }
    if mfa is not None:
        # Only sessions: long-term keys leave the key out (what `BoolIfExists ... false`
        # relies on).
        context["aws:MultiFactorAuthPresent"] = mfa
    return context


def install() -> None:
    """Apply every patch once, after strict_iam and strict_sts (it wraps theirs)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _patch_get_session_token()
    _patch_caller_lookup()
    _patch_self_user_name()
    _patch_authentication()
    _patch_trust_context()
    _patch_evaluation()
    _INSTALLED = True
