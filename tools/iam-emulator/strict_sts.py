"""Real-STS and real-IAM strictness for roles on top of moto 5.2.5.

moto evaluates a role's trust policy when authentication is enforced, but only
roughly: a principal string is matched as a substring, an account principal
(``123456789012`` or ``arn:aws:iam::123456789012:root``) never matches, a
statement naming another principal denies the whole request (even an
``Allow``), a ``Service`` or ``Federated`` principal crashes it, and a role that
does not exist can be assumed. Its ``AssumeRole`` ignores the role's
``MaxSessionDuration`` and IAM's bounds, expired sessions keep working, and
``CreateRole`` accepts malformed principals and any ``MaxSessionDuration``.
Everything here is a monkeypatch applied by ``install()``; README.md lists what
is enforced.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from moto.core.exceptions import AccessDeniedError, _RESTError
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.iam import access_control
from moto.iam import models as iam_models
from moto.iam import responses as iam_responses
from moto.iam.exceptions import IAMException, NotFoundException, ValidationError
from moto.sts import responses as sts_responses
from moto.sts.exceptions import STSValidationError
from moto.sts.models import sts_backends

IamResponse = iam_responses.IamResponse
TokenResponse = sts_responses.TokenResponse
IAMRequestBase = access_control.IAMRequestBase

# STS's bounds of DurationSeconds (service model: 900..43200) and IAM's of a
# role's MaxSessionDuration (roleMaxSessionDurationType: 3600..43200).
MIN_SESSION_SECONDS = 900
MAX_SESSION_SECONDS = 43200
MIN_ROLE_MAX_SESSION = 3600
# "Role chaining limits your AWS CLI or AWS API role session to a maximum of
# one hour" (IAM user guide, "Methods to assume a role").
CHAINED_SESSION_SECONDS = 3600
# RoleSessionName (roleSessionNameType): 2..64 characters of [\w+=,.@-].
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)

# Principals a trust policy may name (IAM user guide, "AWS JSON policy
# elements: Principal"): everyone, an account, a user, a role, an assumed-role
# session or a federated user; services and identity providers by name/ARN.
_PARTITION = r"arn:aws(?:-[a-z]+)*"
AWS_PRINCIPAL = re.compile(
    rf"^(?:\*|\d{{12}}|{_PARTITION}:iam::\d{{12}}:(?:root|user/.+|role/.+)"
    rf"|{_PARTITION}:sts::\d{{12}}:(?:assumed-role/[^/]+/.+|federated-user/.+))$"
)
SERVICE_PRINCIPAL = re.compile(r"^[a-z0-9][a-z0-9.-]*\.amazonaws\.com(?:\.cn)?$")
FEDERATED_PRINCIPAL = re.compile(
    rf"^(?:{_PARTITION}:iam::\d{{12}}:(?:oidc-provider|saml-provider)/.+"
    r"|cognito-identity\.amazonaws\.com|www\.amazon\.com|graph\.facebook\.com|accounts\.google\.com)$"
)
PRINCIPAL_KINDS = {"AWS": AWS_PRINCIPAL, "Service": SERVICE_PRINCIPAL, "Federated": FEDERATED_PRINCIPAL}

_INSTALLED = False


class MalformedPolicyDocument(IAMException):
    code = "MalformedPolicyDocument"


class ExpiredTokenError(_RESTError):
    code = 403

    def __init__(self) -> None:
        super().__init__("ExpiredToken", "The security token included in the request is expired")


class AssumeRoleDenied(AccessDeniedError):
    """STS's wording: the caller, the action and the role."""

    def __init__(self, caller: str, role_arn: str) -> None:
        super().__init__(user_arn=caller, action="sts:AssumeRole")
        message = f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        _RESTError.__init__(self, "AccessDenied", message)


def _model_error(value: Any, member: str, constraint: str) -> str:
    return (
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must {constraint}"
    )


# --------------------------------------------------------------------------
# Roles: trust principals and MaxSessionDuration.
# --------------------------------------------------------------------------


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_trust_principals(document: str | None) -> None:
    """MalformedPolicyDocument "Invalid principal in policy" for a principal IAM
    would not accept. Other grammar is left to moto's own validator."""
    try:
        policy = json.loads(document or "")
    except ValueError:
        return  # moto reports the syntax error
    if not isinstance(policy, dict):
        return
    for statement in _values(policy.get("Statement", [])):
        if not isinstance(statement, dict):
            continue
        for element in ("Principal", "NotPrincipal"):
            if element not in statement:
                continue
            principal = statement[element]
            if principal == "*":
                continue
            if not isinstance(principal, dict) or not principal:
                raise MalformedPolicyDocument(f"Invalid principal in policy: {json.dumps(principal)}")
            for kind, values in principal.items():
                pattern = PRINCIPAL_KINDS.get(kind)
                for value in _values(values):
                    if kind == "CanonicalUser" and isinstance(value, str) and value:
                        continue
                    if pattern is None or not isinstance(value, str) or not pattern.match(value):
                        raise MalformedPolicyDocument(
                            f'Invalid principal in policy: "{kind}":{json.dumps(value)}'
                        )


def _check_max_session(value: Any) -> None:
    if value is None:
        return
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError(_model_error(value, "maxSessionDuration", "be a number"))
    if seconds < MIN_ROLE_MAX_SESSION:
        raise ValidationError(
            _model_error(value, "maxSessionDuration", f"have value greater than or equal to {MIN_ROLE_MAX_SESSION}")
        )
    if seconds > MAX_SESSION_SECONDS:
        raise ValidationError(
            _model_error(value, "maxSessionDuration", f"have value less than or equal to {MAX_SESSION_SECONDS}")
        )


def _patch_roles() -> None:
    orig_create_role = IamResponse.create_role
    orig_update_role = IamResponse.update_role
    orig_update_assume_role_policy = IamResponse.update_assume_role_policy

    def create_role(self: IamResponse) -> ActionResult:
        _check_max_session(self._get_param("MaxSessionDuration"))
        check_trust_principals(self._get_param("AssumeRolePolicyDocument"))
        return orig_create_role(self)

    def update_role(self: IamResponse) -> ActionResult:
        _check_max_session(self._get_param("MaxSessionDuration"))
        return orig_update_role(self)

    def update_assume_role_policy(self: IamResponse) -> ActionResult:
        check_trust_principals(self._get_param("PolicyDocument"))
        return orig_update_assume_role_policy(self)

    IamResponse.create_role = create_role
    IamResponse.update_role = update_role
    IamResponse.update_assume_role_policy = update_assume_role_policy


# --------------------------------------------------------------------------
# AssumeRole: trust evaluation (when authentication is enforced).
# --------------------------------------------------------------------------


def find_role(role_arn: str | None) -> Any | None:
    """The role an ARN names, in whichever account it belongs to."""
    match = re.match(rf"^({_PARTITION}):iam::(\d{{12}}):role/", role_arn or "")
    if not match:
        return None
    partition = match.group(1).split(":")[1]
    try:
        backend = iam_models.iam_backends[match.group(2)][partition]
        return backend.get_role_by_arn(role_arn)
    except (KeyError, NotFoundException):
        return None


def _principal_matches(principal: Any, callers: set[str], account: str) -> bool:
    """Whether a statement's Principal names the caller: `*`, the caller's account
    (its id or root ARN: any identity of it), or one of the caller's ARNs exactly."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for value in _values(principal.get("AWS", [])):
        if not isinstance(value, str):
            continue
        if value == "*" or value in callers:
            return True
        if value == account or re.fullmatch(rf"{_PARTITION}:iam::{account}:root", value):
            return True
    return False


def _action_matches(statement: dict[str, Any], action: str) -> bool:
    def matches(pattern: str) -> bool:
        regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
        return re.match(regex, action, re.IGNORECASE) is not None

    if "NotAction" in statement:
        return not any(matches(p) for p in _values(statement["NotAction"]))
    return any(matches(p) for p in _values(statement.get("Action", [])))


def _like(pattern: str, value: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value) is not None


# Condition operators a trust policy for AWS principals uses; any other one never
# matches (a conservative choice: such a statement grants nothing here).
_OPERATORS = {
    "StringEquals": (lambda want, got: want == got, False),
    "StringNotEquals": (lambda want, got: want == got, True),
    "StringEqualsIgnoreCase": (lambda want, got: want.lower() == got.lower(), False),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "Bool": (lambda want, got: want.lower() == got.lower(), False),
}


def _conditions_hold(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """IAM's condition evaluation for single-valued keys: every operator and key must
    hold; a key missing from the request matches only a negated operator or
    `...IfExists` ("If the key ... is not present in the request context, the values
    do not match")."""
    for operator, keys in (statement.get("Condition") or {}).items():
        if_exists = operator.endswith("IfExists")
        base = operator[: -len("IfExists")] if if_exists else operator
        if base not in _OPERATORS or not isinstance(keys, dict):
            return False
        match, negated = _OPERATORS[base]
        for key, wanted in keys.items():
            got = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if got is None:
                if not (if_exists or negated):
                    return False
                continue
            hit = any(match(str(w), got) for w in _values(wanted))
            if hit == negated:
                return False
    return True


def trust_allows(document: str, callers: set[str], account: str, context: dict[str, str]) -> bool:
    """IAM's evaluation of a trust policy for sts:AssumeRole: some Allow statement
    matches (action, principal, conditions) and no Deny statement does."""
    try:
        policy = json.loads(document)
    except ValueError:
        return False
    allowed = False
    for statement in _values(policy.get("Statement", [])):
        if not isinstance(statement, dict) or not _action_matches(statement, "sts:AssumeRole"):
            continue
        if "NotPrincipal" in statement:
            continue  # not a trust-policy construct the operator writes; never grants
        if not _principal_matches(statement.get("Principal"), callers, account):
            continue
        if not _conditions_hold(statement, context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def caller_principals(access_key: Any) -> set[str]:
    """The ARNs a trust policy may name the caller by: its own, and for a role
    session also the role's ARN (path included)."""
    arn = access_key.arn
    callers = {arn}
    if isinstance(access_key, access_control.AssumedRoleAccessKey):
        name = access_key._owner_role_name.lower()
        for role in access_key.backend.roles.values():
            if role.name.lower() == name:
                callers.add(role.arn)
    return callers


def _patch_assume_role_authorization() -> None:
    orig_check = IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        if self._action != "sts:AssumeRole":
            return orig_check(self, resource)
        caller = self._access_key.arn
        role = find_role(resource)
        # STS does not say whether the role exists: the same AccessDenied.
        if role is None:
            raise AssumeRoleDenied(caller, resource)
        permitted = False
        for policy in self._access_key.collect_policies():
            result = access_control.IAMPolicy(policy).is_action_permitted(self._action, resource)
            if result == access_control.PermissionResult.DENIED:
                raise AssumeRoleDenied(caller, resource)
            if result == access_control.PermissionResult.PERMITTED:
                permitted = True
        context = {"aws:MultiFactorAuthPresent": "false", "aws:PrincipalAccount": self.account_id}
        if "ExternalId" in self._data:
            external = self._data["ExternalId"]
            context["sts:ExternalId"] = external[0] if isinstance(external, list) else external
        trusted = trust_allows(
            role.assume_role_policy_document, caller_principals(self._access_key), self.account_id, context
        )
        if not (permitted and trusted):
            raise AssumeRoleDenied(caller, resource)

    IAMRequestBase.check_action_permitted = check_action_permitted


# --------------------------------------------------------------------------
# AssumeRole: session name, duration; expired sessions.
# --------------------------------------------------------------------------


def _request_access_key(response: Any) -> str | None:
    auth = response.headers.get("Authorization", "") if response.headers else ""
    match = re.search(r"Credential=([^/,\s]+)/", auth)
    return match.group(1) if match else None


def _session_of(access_key_id: str | None) -> Any | None:
    if not access_key_id:
        return None
    for account in list(sts_backends.keys()):
        for partition in list(sts_backends[account].keys()):
            for session in sts_backends[account][partition].assumed_roles:
                if session.access_key_id == access_key_id:
                    return session
    return None


def _patch_assume_role_parameters() -> None:
    orig_assume_role = TokenResponse.assume_role

    def assume_role(self: TokenResponse) -> ActionResult:
        name = self._get_param("RoleSessionName")
        if name is None or not SESSION_NAME.match(name):
            raise STSValidationError(
                _model_error(name, "roleSessionName", r"satisfy regular expression pattern: [\w+=,.@-]{2,64}")
            )
        raw = self._get_param("DurationSeconds")
        seconds = 3600 if raw is None else int(raw)
        if seconds < MIN_SESSION_SECONDS:
            raise STSValidationError(
                _model_error(raw, "durationSeconds", f"have value greater than or equal to {MIN_SESSION_SECONDS}")
            )
        if seconds > MAX_SESSION_SECONDS:
            raise STSValidationError(
                _model_error(raw, "durationSeconds", f"have value less than or equal to {MAX_SESSION_SECONDS}")
            )
        role = find_role(self._get_param("RoleArn"))
        if role is not None and seconds > int(role.max_session_duration or 3600):
            raise STSValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        if seconds > CHAINED_SESSION_SECONDS and _session_of(_request_access_key(self)) is not None:
            raise STSValidationError(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
            )
        return orig_assume_role(self)

    TokenResponse.assume_role = assume_role


def _patch_expired_sessions() -> None:
    orig_init = access_control.AssumedRoleAccessKey.__init__

    def __init__(self: Any, account_id: str, partition: str, access_key_id: str, headers: dict[str, str]) -> None:
        orig_init(self, account_id, partition, access_key_id, headers)
        session = _session_of(access_key_id)
        if session is not None and session.expiration <= utcnow():
            raise ExpiredTokenError()

    access_control.AssumedRoleAccessKey.__init__ = __init__


def age_session(access_key_id: str, seconds: float) -> bool:
    """Moves a session's issue and expiry back (test control), so expiry can be
    tested without waiting out STS's 15-minute minimum."""
    session = _session_of(access_key_id)
    if session is None:
        return False
    session.expiration = session.expiration - datetime.timedelta(seconds=seconds)
    return True


def _patch_unknown_caller() -> None:
    """Without authentication enforced, moto answers GetCallerIdentity for a key it never
    issued with `arn:aws:sts::ACCT:user/moto`, which is no ARN IAM knows (a trust policy
    naming it is malformed). The emulator says `arn:aws:iam::ACCT:user/moto` instead."""
    from moto.sts.models import STSBackend

    orig = STSBackend.get_caller_identity

    def get_caller_identity(self: Any, access_key_id: str, region: str) -> tuple[str, str, str]:
        user_id, arn, account_id = orig(self, access_key_id, region)
        if re.fullmatch(rf"{_PARTITION}:sts::\d{{12}}:user/moto", arn):
            arn = arn.replace(":sts::", ":iam::", 1)
        return user_id, arn, account_id

    STSBackend.get_caller_identity = get_caller_identity


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _patch_unknown_caller()
    _patch_roles()
    _patch_assume_role_authorization()
    _patch_assume_role_parameters()
    _patch_expired_sessions()
    _INSTALLED = True
