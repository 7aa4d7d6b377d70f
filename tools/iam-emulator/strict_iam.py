"""Real-IAM strictness on top of moto 5.2.5's IAM backend.

moto is lax where real IAM refuses, and lacks a few operations an IAM operator
calls. Everything here is a monkeypatch applied by ``install()``, which
server.py calls before serving. Only behaviour that moto 5.2.5 gets wrong or
lacks is patched; see README.md for the list and for what moto already does.

State added here (permissions boundaries of users, service-specific
credentials) lives on moto's own ``User`` objects, so moto's
``POST /moto-api/reset`` clears it along with everything else.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import string
import unicodedata
from typing import Any, Iterable

from moto.core.responses import ActionResult, EmptyResult
from moto.core.serialize import never_return
from moto.core.utils import utcnow
from moto.iam import models as iam_models
from moto.iam import responses as iam_responses
from moto.iam.exceptions import (
    DeleteConflictException,
    DuplicateTags,
    EntityAlreadyExists,
    IAMException,
    InvalidInput,
    LimitExceededException,
    NotFoundException,
    ValidationError,
)

IAMBackend = iam_models.IAMBackend
IamResponse = iam_responses.IamResponse
User = iam_models.User
ManagedPolicy = iam_models.ManagedPolicy

# Real IAM's default quotas (adjustable in a real account; the defaults are what
# a new account has).
MANAGED_POLICIES_PER_USER = 10
MANAGED_POLICIES_PER_GROUP = 10
GROUPS_PER_USER = 10
SERVICE_CREDENTIALS_PER_USER_PER_SERVICE = 2
SUPPORTED_CREDENTIAL_SERVICES = ("codecommit.amazonaws.com", "cassandra.amazonaws.com")
# The symbols IAM's password policy counts as symbols.
PASSWORD_SYMBOLS = set("!@#$%^&*()_+-=[]{}|'")

_INSTALLED = False


class NotSupportedService(IAMException):
    code = "NotSupportedService"  # HTTP 404 per the IAM model


class PasswordPolicyViolation(IAMException):
    code = "PasswordPolicyViolation"  # HTTP 400 per the IAM model


class InvalidUserType(IAMException):
    code = "InvalidUserType"  # HTTP 400 per the IAM model


def _conflict(message: str) -> DeleteConflictException:
    return DeleteConflictException(message)


# --------------------------------------------------------------------------
# DeleteUser / DeleteGroup / DeletePolicy: refuse while dependents exist.
# --------------------------------------------------------------------------


def _service_credentials(user: Any) -> dict[str, ServiceSpecificCredential]:
    creds = user.__dict__.get("emulator_service_credentials")
    if creds is None:
        creds = {}
        user.__dict__["emulator_service_credentials"] = creds
    return creds


def _patch_deletes() -> None:
    orig_delete_user = IAMBackend.delete_user
    orig_delete_group = IAMBackend.delete_group
    orig_delete_policy = IAMBackend.delete_policy

    def delete_user(self: IAMBackend, user_name: str) -> None:
        user = self.get_user(user_name)
        if user.password:
            raise _conflict("Cannot delete entity, must delete login profile first.")
        if user.access_keys:
            raise _conflict("Cannot delete entity, must delete access keys first.")
        if user.signing_certificates:
            raise _conflict("Cannot delete entity, must delete signing certificates first.")
        if user.ssh_public_keys:
            raise _conflict("Cannot delete entity, must delete SSH public keys first.")
        if _service_credentials(user):
            raise _conflict("Cannot delete entity, must delete service specific credentials first.")
        if user.mfa_devices:
            raise _conflict("Cannot delete entity, must delete MFA device first.")
        if self.get_groups_for_user(user_name):
            raise _conflict("Cannot delete entity, must remove users from group first.")
        # moto itself refuses attached ("must detach all policies first") and
        # inline ("must delete policies first") policies.
        orig_delete_user(self, user_name)

    def delete_group(self: IAMBackend, group_name: str) -> None:
        group = self.get_group(group_name)
        if group.users:
            raise _conflict("Cannot delete entity, must remove users from group first.")
        if group.managed_policies:
            raise _conflict("Cannot delete entity, must detach all policies first.")
        if group.policies:
            raise _conflict("Cannot delete entity, must delete policies first.")
        orig_delete_group(self, group_name)

    def delete_policy(self: IAMBackend, policy_arn: str) -> None:
        policy = self.get_policy(policy_arn)
        entities = [
            *self.users.values(),
            *self.groups.values(),
            *self.roles.values(),
        ]
        # Real IAM counts a policy used as a permissions boundary as attached too.
        if any(policy.arn in e.managed_policies for e in entities) or _boundary_usage(
            self, policy.arn
        ):
            raise _conflict("Cannot delete a policy attached to entities.")
        if len(policy.versions) > 1:
            raise _conflict(
                "This policy has more than one version. Before you delete a policy, "
                "you must delete the policy's versions. The default version is "
                "deleted with the policy."
            )
        orig_delete_policy(self, policy_arn)

    IAMBackend.delete_user = delete_user
    IAMBackend.delete_group = delete_group
    IAMBackend.delete_policy = delete_policy


# --------------------------------------------------------------------------
# Attachment quotas and idempotence.
# --------------------------------------------------------------------------


def _patch_attachments() -> None:
    orig_attach_user_policy = IAMBackend.attach_user_policy
    orig_attach_group_policy = IAMBackend.attach_group_policy
    orig_add_user_to_group = IAMBackend.add_user_to_group

    def attach_user_policy(self: IAMBackend, policy_arn: str, user_name: str) -> None:
        user = self.get_user(user_name)
        if policy_arn in user.managed_policies:
            # Real IAM: attaching an attached policy is a no-op. moto would count
            # the attachment twice (AttachmentCount 2 for one user).
            return
        if len(user.managed_policies) >= MANAGED_POLICIES_PER_USER:
            raise LimitExceededException(
                f"Cannot exceed quota for PoliciesPerUser: {MANAGED_POLICIES_PER_USER}"
            )
        orig_attach_user_policy(self, policy_arn, user_name)

    def attach_group_policy(self: IAMBackend, policy_arn: str, group_name: str) -> None:
        group = self.get_group(group_name)
        if (
            policy_arn not in group.managed_policies
            and len(group.managed_policies) >= MANAGED_POLICIES_PER_GROUP
        ):
            raise LimitExceededException(
                f"Cannot exceed quota for PoliciesPerGroup: {MANAGED_POLICIES_PER_GROUP}"
            )
        orig_attach_group_policy(self, policy_arn, group_name)

    def add_user_to_group(self: IAMBackend, group_name: str, user_name: str) -> None:
        user = self.get_user(user_name)
        group = self.get_group(group_name)
        if user not in group.users and len(self.get_groups_for_user(user_name)) >= (
            GROUPS_PER_USER
        ):
            raise LimitExceededException(
                f"Cannot exceed quota for GroupsPerUser: {GROUPS_PER_USER}"
            )
        orig_add_user_to_group(self, group_name, user_name)

    IAMBackend.attach_user_policy = attach_user_policy
    IAMBackend.attach_group_policy = attach_group_policy
    IAMBackend.add_user_to_group = add_user_to_group


# --------------------------------------------------------------------------
# User permissions boundaries (moto 5.2.5 has them for roles only).
# --------------------------------------------------------------------------


def _boundary_usage(backend: IAMBackend, policy_arn: str) -> list[Any]:
    users = [u for u in backend.users.values() if u.permissions_boundary_arn == policy_arn]
    roles = [r for r in backend.roles.values() if r.permissions_boundary_arn == policy_arn]
    return users + roles


def _validate_boundary(backend: IAMBackend, arn: str) -> None:
    if not backend.policy_arn_regex.match(arn):
        raise InvalidInput(f"ARN {arn} is not valid.")
    if arn not in backend.managed_policies:
        raise NotFoundException(f"Scope ARN: {arn} does not exist or is not attachable.")


def _user_permissions_boundary(self: Any) -> dict[str, str] | None:
    if not self.permissions_boundary_arn:
        return None
    return {
        # The only value of IAM's PermissionsBoundaryAttachmentType enum.
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": self.permissions_boundary_arn,
    }


def _policy_boundary_usage_count(self: Any) -> int:
    try:
        return len(_boundary_usage(self.backend, self.arn))
    except Exception:  # an AWS managed policy of an account not yet created
        return 0


def _patch_boundaries() -> None:
    User.permissions_boundary_arn = None
    User.permissions_boundary = property(_user_permissions_boundary)
    ManagedPolicy.permissions_boundary_usage_count = property(_policy_boundary_usage_count)
    # GetAccountAuthorizationDetails' ManagedPolicyDetail names these fields
    # PolicyName/PolicyId, which moto's serializer cannot map to name/id.
    ManagedPolicy.policy_name = property(lambda self: self.name)
    ManagedPolicy.policy_id = property(lambda self: self.id)

    orig_create_user = IamResponse.create_user

    def create_user(self: IamResponse) -> ActionResult:
        boundary = self._get_param("PermissionsBoundary")
        if boundary:
            _validate_boundary(self.backend, boundary)
        result = orig_create_user(self)
        if boundary:
            self.backend.get_user(self._get_param("UserName")).permissions_boundary_arn = boundary
        return result

    def put_user_permissions_boundary(self: IamResponse) -> ActionResult:
        user = self.backend.get_user(self._get_param("UserName"))
        boundary = self._get_param("PermissionsBoundary")
        _validate_boundary(self.backend, boundary or "")
        user.permissions_boundary_arn = boundary
        return EmptyResult()

    def delete_user_permissions_boundary(self: IamResponse) -> ActionResult:
        user = self.backend.get_user(self._get_param("UserName"))
        user.permissions_boundary_arn = None
        return EmptyResult()

    orig_list_entities = IamResponse.list_entities_for_policy

    def list_entities_for_policy(self: IamResponse) -> ActionResult:
        usage = self._get_param("PolicyUsageFilter")
        entity_filter = self._get_param("EntityFilter")
        policy_arn = self._get_param("PolicyArn")
        self.backend.get_policy(policy_arn)  # NoSuchEntity for an unknown policy
        if usage == "PermissionsBoundary":
            result: dict[str, Any] = {
                "PolicyUsers": [],
                "PolicyRoles": [],
                "PolicyGroups": [],
                "IsTruncated": False,
            }
        else:
            result = dict(orig_list_entities(self).result)  # type: ignore[arg-type]
        if usage in (None, "", "PermissionsBoundary"):
            users = list(result["PolicyUsers"])
            roles = list(result["PolicyRoles"])
            for entity in _boundary_usage(self.backend, policy_arn):
                is_user = isinstance(entity, User)
                if entity_filter and entity_filter != ("User" if is_user else "Role"):
                    continue
                target = users if is_user else roles
                if entity not in target:
                    target.append(entity)
            result["PolicyUsers"] = users
            result["PolicyRoles"] = roles
        return ActionResult(result)

    IamResponse.create_user = create_user
    IamResponse.put_user_permissions_boundary = put_user_permissions_boundary
    IamResponse.delete_user_permissions_boundary = delete_user_permissions_boundary
    IamResponse.list_entities_for_policy = list_entities_for_policy
    # Real ListUsers leaves out PermissionsBoundary and Tags ("resource-listing
    # operations return a subset of the attributes"); moto already drops Tags.
    IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER = {
        **IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER,
        "ListUsersResponse.Users.User.PermissionsBoundary": never_return,
    }


# --------------------------------------------------------------------------
# Login profiles: PasswordResetRequired, password policy, partial updates.
# --------------------------------------------------------------------------


def _check_password(backend: IAMBackend, password: str | None) -> None:
    password = password or ""
    policy = backend.account_password_policy
    has_lower = any(c.islower() for c in password)
    has_upper = any(c.isupper() for c in password)
    has_digit = any(c.isdigit() for c in password)
    ok = len(password) <= 128
    if policy is None:
        # IAM's default policy: 8..128 characters, three of the four classes.
        has_other = any(not c.isalnum() for c in password)
        ok = ok and len(password) >= 8
        ok = ok and sum([has_lower, has_upper, has_digit, has_other]) >= 3
    else:
        ok = ok and len(password) >= (policy.minimum_password_length or 6)
        if policy.require_lowercase_characters:
            ok = ok and has_lower
        if policy.require_uppercase_characters:
            ok = ok and has_upper
        if policy.require_numbers:
            ok = ok and has_digit
        if policy.require_symbols:
            ok = ok and any(c in PASSWORD_SYMBOLS for c in password)
    if not ok:
        raise PasswordPolicyViolation("Password does not conform to the account password policy.")


def _login_profile(user: Any) -> dict[str, Any]:
    return {
        "LoginProfile": {
            "UserName": user.name,
            "CreateDate": user.create_date,
            "PasswordResetRequired": bool(user.password_reset_required),
        }
    }


def _patch_login_profiles() -> None:
    def create_login_profile(self: IamResponse) -> ActionResult:
        user_name = self._get_param("UserName")
        password = self._get_param("Password")
        reset_required = self._get_bool_param("PasswordResetRequired", False)
        user = self.backend.get_user(user_name)
        if not user.password:
            _check_password(self.backend, password)
        user = self.backend.create_login_profile(user_name, password)
        user.password_reset_required = reset_required
        return ActionResult(_login_profile(user))

    def update_login_profile(self: IamResponse) -> ActionResult:
        # moto sets the password to None (deleting the login profile) when only
        # PasswordResetRequired is sent; real IAM changes only what is sent.
        user_name = self._get_param("UserName")
        password = self._get_param("Password")
        reset_required = self._get_bool_param("PasswordResetRequired", None)
        user = self.backend.get_login_profile(user_name)  # NoSuchEntity if none
        if password is not None:
            _check_password(self.backend, password)
            user.password = password
        if reset_required is not None:
            user.password_reset_required = reset_required
        return EmptyResult()

    def change_password(self: IamResponse) -> Any:
        # Absent from moto 5.2.5. IAM changes the password of the calling IAM user (the
        # owner of the access key that signed the request), only when OldPassword is its
        # current password; the new one must meet the password policy, and a required
        # reset is then done.
        old = self._get_param("OldPassword")
        new = self._get_param("NewPassword")
        user = self.backend.get_user_from_access_key_id(self.get_access_key())
        if user is None:
            raise InvalidUserType(
                "The request was rejected because the type of user for the transaction was incorrect."
            )
        if not user.password:
            raise NotFoundException(f"Login Profile for User {user.name} cannot be found.")
        if old != user.password:
            body = iam_error_body(
                "AccessDenied",
                "Either user is not authorized to perform iam:ChangePassword or entered password is not valid",
            )
            return 403, {"status": 403, "Content-Type": "text/xml"}, body
        _check_password(self.backend, new)
        user.password = new
        user.password_reset_required = False
        return EmptyResult()

    IamResponse.create_login_profile = create_login_profile
    IamResponse.update_login_profile = update_login_profile
    IamResponse.change_password = change_password


# --------------------------------------------------------------------------
# Service-specific credentials (absent from moto 5.2.5).
# --------------------------------------------------------------------------


def _random_id(prefix: str) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(17))


def _random_service_password() -> str:
    return base64.b64encode(secrets.token_bytes(33)).decode()


class ServiceSpecificCredential:
    """Attribute names follow the IAM model so moto's serializer finds them."""

    def __init__(self, user: Any, service_name: str) -> None:
        self.user_name = user.name
        self.service_name = service_name
        self.service_user_name = f"{user.name}-at-{user.account_id}"
        self.service_password = _random_service_password()
        self.service_specific_credential_id = _random_id("ACCA")
        self.create_date = utcnow()
        self.status = "Active"


def _patch_service_credentials() -> None:
    def _user(self: IamResponse) -> Any:
        user_name = self._get_param("UserName")
        if not user_name:
            found = self.backend.get_user_from_access_key_id(self.get_access_key())
            if found is None:
                raise NotFoundException("The user with name None cannot be found.")
            return found
        return self.backend.get_user(user_name)

    def _credential(self: IamResponse) -> ServiceSpecificCredential:
        user = _user(self)
        cred_id = self._get_param("ServiceSpecificCredentialId")
        cred = _service_credentials(user).get(cred_id)
        if cred is None:
            raise NotFoundException(
                f"The Service Specific Credential with id {cred_id} cannot be found."
            )
        return cred

    def create_service_specific_credential(self: IamResponse) -> ActionResult:
        user = _user(self)
        service = self._get_param("ServiceName")
        if service not in SUPPORTED_CREDENTIAL_SERVICES:
            raise NotSupportedService(
                f"No such service {service} is supported for Service Specific Credentials"
            )
        creds = _service_credentials(user)
        if (
            sum(1 for c in creds.values() if c.service_name == service)
            >= SERVICE_CREDENTIALS_PER_USER_PER_SERVICE
        ):
            raise LimitExceededException(
                "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: "
                f"{SERVICE_CREDENTIALS_PER_USER_PER_SERVICE}"
            )
        cred = ServiceSpecificCredential(user, service)
        creds[cred.service_specific_credential_id] = cred
        return ActionResult({"ServiceSpecificCredential": cred})

    def list_service_specific_credentials(self: IamResponse) -> ActionResult:
        user = _user(self)
        service = self._get_param("ServiceName")
        creds = [
            c
            for c in _service_credentials(user).values()
            if not service or c.service_name == service
        ]
        return ActionResult({"ServiceSpecificCredentials": creds, "IsTruncated": False})

    def update_service_specific_credential(self: IamResponse) -> ActionResult:
        _credential(self).status = self._get_param("Status")
        return EmptyResult()

    def reset_service_specific_credential(self: IamResponse) -> ActionResult:
        cred = _credential(self)
        cred.service_password = _random_service_password()
        return ActionResult({"ServiceSpecificCredential": cred})

    def delete_service_specific_credential(self: IamResponse) -> ActionResult:
        cred = _credential(self)
        del _service_credentials(self.backend.get_user(cred.user_name))[
            cred.service_specific_credential_id
        ]
        return EmptyResult()

    IamResponse.create_service_specific_credential = create_service_specific_credential
    IamResponse.list_service_specific_credentials = list_service_specific_credentials
    IamResponse.update_service_specific_credential = update_service_specific_credential
    IamResponse.reset_service_specific_credential = reset_service_specific_credential
    IamResponse.delete_service_specific_credential = delete_service_specific_credential


# --------------------------------------------------------------------------
# Pagination of ListUsers and GetAccountAuthorizationDetails.
# --------------------------------------------------------------------------


def _encode_marker(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode_marker(marker: str) -> list[Any]:
    try:
        position = json.loads(base64.urlsafe_b64decode(marker.encode()))
        if isinstance(position, list):
            return position
    except ValueError:
        pass
    raise InvalidInput("Invalid Marker.")


def _max_items(self: IamResponse) -> int:
    value = self._get_int_param("MaxItems") or 100
    if not 1 <= value <= 1000:
        raise InvalidInput(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to "
            "satisfy constraint: Member must have value between 1 and 1000"
        )
    return value


def _page(self: IamResponse, keyed: list[tuple[list[Any], Any]]) -> tuple[list[Any], str | None]:
    """Pages items sorted by key; the marker is the key of the next page's first
    item, so deletions between pages skip nothing."""
    keyed = sorted(keyed, key=lambda kv: kv[0])
    marker = self._get_param("Marker")
    if marker:
        start_key = _decode_marker(marker)
        keyed = [kv for kv in keyed if kv[0] >= start_key]
    limit = _max_items(self)
    page, rest = keyed[:limit], keyed[limit:]
    return page, (_encode_marker(rest[0][0]) if rest else None)


def _patch_pagination() -> None:
    orig_list_users = IamResponse.list_users
    orig_gaad = IamResponse.get_account_authorization_details

    def list_users(self: IamResponse) -> ActionResult:
        result = dict(orig_list_users(self).result)  # type: ignore[arg-type]
        page, next_marker = _page(self, [([u.name], u) for u in result["Users"]])
        result["Users"] = [u for _, u in page]
        result["IsTruncated"] = next_marker is not None
        if next_marker:
            result["Marker"] = next_marker
        return ActionResult(result)

    lists = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")

    def get_account_authorization_details(self: IamResponse) -> ActionResult:
        result = dict(orig_gaad(self).result)  # type: ignore[arg-type]
        keyed: list[tuple[list[Any], Any]] = []
        for index, name in enumerate(lists):
            for item in result[name]:
                if name == "Policies":
                    # Real IAM lists AWS managed policies only while in use.
                    if (
                        isinstance(item, iam_models.AWSManagedPolicy)
                        and not item.attachment_count
                        and not _boundary_usage(self.backend, item.arn)
                    ):
                        continue
                    keyed.append(([index, item.arn], item))
                else:
                    keyed.append(([index, item.name], item))
        page, next_marker = _page(self, keyed)
        for index, name in enumerate(lists):
            result[name] = [item for key, item in page if key[0] == index]
        result["IsTruncated"] = next_marker is not None
        if next_marker:
            result["Marker"] = next_marker
        return ActionResult(result)

    IamResponse.list_users = list_users
    IamResponse.get_account_authorization_details = get_account_authorization_details


# --------------------------------------------------------------------------
# Policy size limits (IAM quotas: "IAM and AWS STS quotas", character limits).
# --------------------------------------------------------------------------

# A customer managed policy document, per version.
MANAGED_POLICY_SIZE = 6144
# All of one principal's inline policies together.
INLINE_POLICY_SIZE = {"user": 2048, "group": 5120, "role": 10240}
# A role's trust policy (AssumeRolePolicyDocument), the "ACLSizePerRole" quota.
TRUST_POLICY_SIZE = 2048
_JSON_WHITESPACE = frozenset(" \t\n\r")  # the four whitespace characters of RFC 8259


def policy_size(document: str) -> int:
    """A policy document's size as IAM counts it against its quotas.

    IAM's documentation: "IAM doesn't count white space when calculating the size
    of a policy against these limits." The rule used here: the number of
    characters (Unicode code points) of the document as sent, leaving out JSON
    whitespace (space, tab, line feed, carriage return) outside string values.
    Everything inside a string value counts, its quotes and spaces included, and
    an escape counts as written (``\\u0041`` is 6 characters, not 1). So the
    size is that of the document re-serialised without insignificant whitespace.
    A document that is not valid JSON is counted by the same scan; moto rejects
    it afterwards as MalformedPolicyDocument if it is still within the limit.
    """
    size = 0
    in_string = False
    escaped = False
    for ch in document:
        if in_string:
            size += 1
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch not in _JSON_WHITESPACE:
            size += 1
            in_string = ch == '"'
    return size


def _check_managed_policy_size(document: str | None) -> None:
    if policy_size(document or "") > MANAGED_POLICY_SIZE:
        raise LimitExceededException(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE}")


def _check_inline_policy_size(
    kind: str, entity: Any, policy_name: str, document: str | None
) -> None:
    """The new document replaces a same-named inline policy of the entity; the
    limit applies to the sum over all of the entity's inline policies."""
    total = policy_size(document or "") + sum(
        policy_size(doc) for name, doc in entity.policies.items() if name != policy_name
    )
    limit = INLINE_POLICY_SIZE[kind]
    if total > limit:
        raise LimitExceededException(
            f"Maximum policy size of {limit} bytes exceeded for {kind} {entity.name}"
        )


def _check_trust_policy_size(document: str | None) -> None:
    if policy_size(document or "") > TRUST_POLICY_SIZE:
        raise LimitExceededException(f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_SIZE}")


def _patch_policy_sizes() -> None:
    orig_create_policy = IAMBackend.create_policy
    orig_create_policy_version = IAMBackend.create_policy_version
    orig_put_user_policy = IAMBackend.put_user_policy
    orig_put_group_policy = IAMBackend.put_group_policy
    orig_put_role_policy = IAMBackend.put_role_policy
    orig_create_role = IAMBackend.create_role
    orig_update_assume_role_policy = IAMBackend.update_assume_role_policy

    def create_policy(
        self: IAMBackend,
        description: str,
        path: str,
        policy_document: str,
        policy_name: str,
        tags: list[dict[str, str]],
    ) -> Any:
        _check_managed_policy_size(policy_document)
        return orig_create_policy(self, description, path, policy_document, policy_name, tags)

    def create_policy_version(
        self: IAMBackend, policy_arn: str, policy_document: str, set_as_default: bool
    ) -> Any:
        self.get_policy(policy_arn)  # NoSuchEntity before any size complaint
        _check_managed_policy_size(policy_document)
        return orig_create_policy_version(self, policy_arn, policy_document, set_as_default)

    def put_user_policy(
        self: IAMBackend, user_name: str, policy_name: str, policy_json: str
    ) -> None:
        _check_inline_policy_size("user", self.get_user(user_name), policy_name, policy_json)
        orig_put_user_policy(self, user_name, policy_name, policy_json)

    def put_group_policy(
        self: IAMBackend, group_name: str, policy_name: str, policy_json: str
    ) -> None:
        _check_inline_policy_size("group", self.get_group(group_name), policy_name, policy_json)
        orig_put_group_policy(self, group_name, policy_name, policy_json)

    def put_role_policy(
        self: IAMBackend, role_name: str, policy_name: str, policy_json: str
    ) -> None:
        _check_inline_policy_size("role", self.get_role(role_name), policy_name, policy_json)
        orig_put_role_policy(self, role_name, policy_name, policy_json)

    def create_role(
        self: IAMBackend,
        role_name: str,
        assume_role_policy_document: str,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _check_trust_policy_size(assume_role_policy_document)
        return orig_create_role(self, role_name, assume_role_policy_document, *args, **kwargs)

    def update_assume_role_policy(self: IAMBackend, role_name: str, policy_document: str) -> None:
        self.get_role(role_name)
        _check_trust_policy_size(policy_document)
        orig_update_assume_role_policy(self, role_name, policy_document)

    IAMBackend.create_policy = create_policy
    IAMBackend.create_policy_version = create_policy_version
    IAMBackend.put_user_policy = put_user_policy
    IAMBackend.put_group_policy = put_group_policy
    IAMBackend.put_role_policy = put_role_policy
    IAMBackend.create_role = create_role
    IAMBackend.update_assume_role_policy = update_assume_role_policy


# --------------------------------------------------------------------------
# Tags of users, roles and customer managed policies.
# --------------------------------------------------------------------------

# IAM quotas: "Tags per IAM user / role / customer managed policy: 50".
TAGS_PER_ENTITY = 50
# The IAM service model (botocore's iam service-2.json): tagListType max 50,
# tagKeyType 1..128 and tagValueType 0..256 characters, both with the pattern
# [\p{L}\p{Z}\p{N}_.:/=+\-@] (+ for keys, * for values).
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
_TAG_SYMBOLS = frozenset("_.:/=+-@")


def _tag_char_ok(ch: str) -> bool:
    # \p{L} letters, \p{Z} separators (space included; tab and newline are not),
    # \p{N} numbers: the Unicode general categories L*, Z*, N*.
    return ch in _TAG_SYMBOLS or unicodedata.category(ch)[0] in "LZN"


def _model_error(value: Any, where: str, constraint: str) -> ValidationError:
    """IAM's answer to a request that breaks a constraint of its service model."""
    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
        f"constraint: {constraint}"
    )


def _validate_tags(tags: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """The checks of one request's Tags, in IAM's order: the service model's
    constraints (ValidationError, HTTP 400) and then IAM's own rules."""
    tags = list(tags or [])
    if len(tags) > TAGS_PER_ENTITY:
        raise _model_error(
            tags, "tags", f"Member must have length less than or equal to {TAGS_PER_ENTITY}"
        )
    for index, tag in enumerate(tags, start=1):
        key, value = tag.get("Key") or "", tag.get("Value") or ""
        where = f"tags.{index}.member"
        if len(key) < 1:
            raise _model_error(
                key, f"{where}.key", "Member must have length greater than or equal to 1"
            )
        if len(key) > TAG_KEY_MAX:
            raise _model_error(
                key, f"{where}.key", f"Member must have length less than or equal to {TAG_KEY_MAX}"
            )
        if not all(_tag_char_ok(c) for c in key):
            raise _model_error(
                key,
                f"{where}.key",
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            )
        if len(value) > TAG_VALUE_MAX:
            raise _model_error(
                value,
                f"{where}.value",
                f"Member must have length less than or equal to {TAG_VALUE_MAX}",
            )
        if not all(_tag_char_ok(c) for c in value):
            raise _model_error(
                value,
                f"{where}.value",
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            )
    seen: set[str] = set()
    for tag in tags:
        key = tag["Key"].lower()
        # The aws: prefix is reserved for AWS in any letter case (IAM User Guide,
        # "Tagging IAM resources"). The wording of this message is the emulator's.
        if key.startswith("aws:"):
            raise InvalidInput(
                f"Tag key {tag['Key']} is not valid: keys beginning with aws: are reserved "
                "for AWS use."
            )
        if key in seen:
            raise DuplicateTags()  # moto's InvalidInput, "Tag keys are case insensitive."
        seen.add(key)
    return tags


def _check_tag_count(kind: str, existing_keys: Iterable[str], tags: list[dict[str, str]]) -> None:
    """At most 50 tags on the entity once the request's tags are merged in. Keys
    match case-insensitively (IAM User Guide: "you cannot have separate Department
    and department tag keys"), so a re-sent key replaces its tag and adds none.
    The wording of this message is the emulator's."""
    keys = {k.lower() for k in existing_keys} | {t["Key"].lower() for t in tags}
    if len(keys) > TAGS_PER_ENTITY:
        raise LimitExceededException(
            f"Cannot add tags: a {kind} can have at most {TAGS_PER_ENTITY} tags "
            f"({len(keys)} after this request)."
        )


def _user_tag_keys(backend: IAMBackend, user: Any) -> list[str]:
    return [t["Key"] for t in backend.tagger.list_tags_for_resource(user.arn)["Tags"]]


def _patch_tags() -> None:
    orig_create_user = IAMBackend.create_user
    orig_create_role = IAMBackend.create_role
    orig_create_policy = IAMBackend.create_policy
    orig_tag_user = IAMBackend.tag_user
    orig_tag_role = IAMBackend.tag_role
    orig_tag_policy = IAMBackend.tag_policy

    def create_user(
        self: IAMBackend,
        region_name: str,
        user_name: str,
        path: str = "/",
        tags: list[dict[str, str]] | None = None,
    ) -> Any:
        tags = _validate_tags(tags)  # moto checks no tags of a new user at all
        return orig_create_user(self, region_name, user_name, path, tags)

    def create_role(
        self: IAMBackend,
        role_name: str,
        assume_role_policy_document: str,
        path: str,
        permissions_boundary: str | None,
        description: str,
        tags: list[dict[str, str]],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        tags = _validate_tags(tags)
        return orig_create_role(
            self,
            role_name,
            assume_role_policy_document,
            path,
            permissions_boundary,
            description,
            tags,
            *args,
            **kwargs,
        )

    def create_policy(
        self: IAMBackend,
        description: str,
        path: str,
        policy_document: str,
        policy_name: str,
        tags: list[dict[str, str]],
    ) -> Any:
        tags = _validate_tags(tags)
        return orig_create_policy(self, description, path, policy_document, policy_name, tags)

    def tag_user(self: IAMBackend, name: str, tags: list[dict[str, str]]) -> None:
        tags = _validate_tags(tags)
        user = self.get_user(name)
        existing = _user_tag_keys(self, user)
        _check_tag_count("user", existing, tags)
        # moto keys user tags case-sensitively; drop the old spelling of a key
        # that the request sets again, so that the new tag replaces it.
        new_keys = {t["Key"].lower(): t["Key"] for t in tags}
        stale = [k for k in existing if new_keys.get(k.lower(), k) != k]
        if stale:
            self.tagger.untag_resource_using_names(user.arn, stale)
        orig_tag_user(self, name, tags)

    def tag_role(self: IAMBackend, role_name: str, tags: list[dict[str, str]]) -> None:
        tags = _validate_tags(tags)
        role = self.get_role(role_name)
        _check_tag_count("role", [t["Key"] for t in role.tags], tags)
        new_keys = {t["Key"].lower() for t in tags}
        role.tags = [t for t in role.tags if t["Key"].lower() not in new_keys]
        orig_tag_role(self, role_name, tags)

    def tag_policy(self: IAMBackend, policy_arn: str, tags: list[dict[str, str]]) -> None:
        tags = _validate_tags(tags)
        policy = self.get_policy(policy_arn)
        # moto keys policy tags by the lower-cased key already.
        _check_tag_count("policy", [t["Key"] for t in policy.tags.values()], tags)
        orig_tag_policy(self, policy_arn, tags)

    IAMBackend.create_user = create_user
    IAMBackend.create_role = create_role
    IAMBackend.create_policy = create_policy
    IAMBackend.tag_user = tag_user
    IAMBackend.tag_role = tag_role
    IAMBackend.tag_policy = tag_policy


# --------------------------------------------------------------------------
# Names are not distinguished by case.
# --------------------------------------------------------------------------
#
# IAM quotas page: "Names of users, groups, roles, and instance profiles must be
# unique within the account. They aren't distinguished by case, for example, you
# can't create groups named both ADMINS and admins." A lookup by name in another
# letter case finds the entity, which keeps and returns the name it was created
# with. Customer managed policy names are unique in the account whatever their
# path, also regardless of case.
#
# moto keys users and groups by their exact names and compares role and
# instance profile names exactly. Creation is refused in the backend; lookups
# are fixed in one place: every UserName / GroupName / RoleName /
# InstanceProfileName request parameter is replaced by the stored spelling of
# the entity it names, before moto sees it.


def _same_name(names: Iterable[str], name: str) -> str | None:
    """The stored name equal to `name` regardless of case, if any."""
    lowered = name.lower()
    return next((n for n in names if n.lower() == lowered), None)


def _names_for_param(backend: IAMBackend, param: str) -> Iterable[str]:
    if param == "UserName":
        return backend.users.keys()
    if param == "GroupName":
        return backend.groups.keys()
    if param == "RoleName":
        return [r.name for r in backend.roles.values()]
    return backend.instance_profiles.keys()  # InstanceProfileName


# The parameter that names the entity an action creates: it is the new name,
# not a reference to an existing entity, so it is taken as sent.
_CREATED_NAME_PARAM = {
    "CreateUser": "UserName",
    "CreateGroup": "GroupName",
    "CreateRole": "RoleName",
    "CreateInstanceProfile": "InstanceProfileName",
}


def _patch_case_insensitive_names() -> None:
    orig_get_param = IamResponse._get_param
    orig_create_user = IAMBackend.create_user
    orig_create_group = IAMBackend.create_group
    orig_create_role = IAMBackend.create_role
    orig_create_policy = IAMBackend.create_policy
    orig_create_instance_profile = IAMBackend.create_instance_profile
    orig_update_user = IAMBackend.update_user
    orig_update_group = IAMBackend.update_group

    def _get_param(self: IamResponse, param_name: str, if_none: Any = None) -> Any:
        value = orig_get_param(self, param_name, if_none)
        if (
            param_name in ("UserName", "GroupName", "RoleName", "InstanceProfileName")
            and isinstance(value, str)
            and value
            and _CREATED_NAME_PARAM.get(self._get_action()) != param_name
        ):
            names = _names_for_param(self.backend, param_name)
            if value not in names:
                value = _same_name(names, value) or value
        return value

    def create_user(
        self: IAMBackend, region_name: str, user_name: str, *args: Any, **kwargs: Any
    ) -> Any:
        if _same_name(self.users, user_name) is not None:
            raise EntityAlreadyExists(f"User with name {user_name} already exists.")
        return orig_create_user(self, region_name, user_name, *args, **kwargs)

    def create_group(self: IAMBackend, group_name: str, path: str = "/") -> Any:
        if _same_name(self.groups, group_name) is not None:
            raise EntityAlreadyExists(f"Group with name {group_name} already exists.")
        return orig_create_group(self, group_name, path)

    def create_role(self: IAMBackend, role_name: str, *args: Any, **kwargs: Any) -> Any:
        if _same_name((r.name for r in self.roles.values()), role_name) is not None:
            raise EntityAlreadyExists(f"Role with name {role_name} already exists.")
        return orig_create_role(self, role_name, *args, **kwargs)

    def create_policy(
        self: IAMBackend,
        description: str,
        path: str,
        policy_document: str,
        policy_name: str,
        tags: list[dict[str, str]],
    ) -> Any:
        # moto keys policies by ARN, which holds the path; IAM refuses the name
        # on any path. AWS managed policies (arn:aws:iam::aws:...) do not count.
        local = (
            p.name
            for p in self.managed_policies.values()
            if not isinstance(p, iam_models.AWSManagedPolicy)
        )
        if _same_name(local, policy_name) is not None:
            raise EntityAlreadyExists(
                f"A policy called {policy_name} already exists. Duplicate names are not allowed."
            )
        return orig_create_policy(self, description, path, policy_document, policy_name, tags)

    def create_instance_profile(self: IAMBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        if _same_name(self.instance_profiles, name) is not None:
            raise EntityAlreadyExists(f"Instance Profile {name} already exists.")
        return orig_create_instance_profile(self, name, *args, **kwargs)

    def update_user(
        self: IAMBackend,
        user_name: str,
        new_path: str | None = None,
        new_user_name: str | None = None,
    ) -> None:
        self.get_user(user_name)
        if new_user_name:
            # moto would overwrite another user of that exact name.
            taken = _same_name(self.users, new_user_name)
            if taken is not None and taken != user_name:
                raise EntityAlreadyExists(f"User with name {new_user_name} already exists.")
        orig_update_user(self, user_name, new_path, new_user_name)

    def update_group(
        self: IAMBackend, group_name: str, new_group_name: str | None, new_path: str | None
    ) -> None:
        self.get_group(group_name)
        if new_group_name:
            taken = _same_name(self.groups, new_group_name)
            if taken is not None and taken != group_name:
                raise EntityAlreadyExists(f"Group with name {new_group_name} already exists.")
        orig_update_group(self, group_name, new_group_name, new_path)

    IamResponse._get_param = _get_param
    IAMBackend.create_user = create_user
    IAMBackend.create_group = create_group
    IAMBackend.create_role = create_role
    IAMBackend.create_policy = create_policy
    IAMBackend.create_instance_profile = create_instance_profile
    IAMBackend.update_user = update_user
    IAMBackend.update_group = update_group


# --------------------------------------------------------------------------
# Unknown actions: an IAM-style error instead of moto's HTML 500.
# --------------------------------------------------------------------------


def iam_error_body(
    code: str, message: str, sender: bool = True, request_id: str | None = None
) -> str:
    """An IAM (query protocol) ErrorResponse document, as real IAM sends it."""
    from xml.sax.saxutils import escape

    request_id = request_id or secrets.token_hex(16)
    return (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>{'Sender' if sender else 'Receiver'}</Type>"
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def _patch_unknown_actions() -> None:
    orig_call_action = IamResponse.call_action

    def call_action(self: IamResponse) -> Any:
        try:
            return orig_call_action(self)
        except NotImplementedError:
            action = self._get_action()
            body = iam_error_body(
                "InvalidAction",
                f"The action {action} is not valid for this web service "
                "(not implemented by the iam-operator IAM emulator).",
            )
            return 400, {"Content-Type": "text/xml"}, body

    IamResponse.call_action = call_action


# --------------------------------------------------------------------------
# Speed: build the ~1600 AWS managed policies once, not on every reset.
# --------------------------------------------------------------------------


def _clone_aws_policy(proto: Any) -> Any:
    clone = copy.copy(proto)
    clone.attachment_count = 0
    clone.tags = dict(proto.tags)
    clone.versions = [copy.copy(v) for v in proto.versions]
    return clone


def _patch_aws_policy_cache() -> None:
    """moto parses its 175k-line policy file for every IAM backend it creates,
    which happens twice per /moto-api/reset; clones of one parse are enough."""
    orig_init = IAMBackend._init_aws_policies
    prototypes: dict[tuple[str, str], list[Any]] = {}

    def _init_aws_policies(self: IAMBackend) -> list[Any]:
        # moto creates the IAM backend of every partition (aws-cn, aws-us-gov,
        # ...) as soon as anything iterates them; the operator and its tests
        # only use "aws", so the others get no AWS managed policies.
        if self.region_name != "aws":
            return []
        key = (self.account_id, self.region_name)
        if key not in prototypes:
            prototypes[key] = orig_init(self)
        return [_clone_aws_policy(p) for p in prototypes[key]]

    IAMBackend._init_aws_policies = _init_aws_policies


def install() -> None:
    """Apply every patch once. Call before the server handles a request."""
    global _INSTALLED
    if _INSTALLED:
        return
    _patch_deletes()
    _patch_attachments()
    _patch_boundaries()
    _patch_login_profiles()
    _patch_service_credentials()
    _patch_pagination()
    _patch_policy_sizes()
    _patch_tags()
    _patch_case_insensitive_names()
    _patch_unknown_actions()
    _patch_aws_policy_cache()
    _INSTALLED = True
