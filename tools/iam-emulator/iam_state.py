"""Prints what an IAM endpoint holds: users (groups, policies, keys, console access),
groups (policies, members), roles (trust, policies, boundary, instance profiles) and
customer-managed policies. Never prints secrets.

    python iam_state.py http://127.0.0.1:PORT
"""

import json
import sys
from typing import Any, Iterator

import boto3

OWNER_TAG = "iam.kubeop.dev/owner"


def _all(iam: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    return [item for page in iam.get_paginator(operation).paginate(**kwargs) for item in page[key]]


def _trust(document: Any) -> str:
    """A role's trust policy on one line (boto3 hands it over decoded, as a dict)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return document
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def describe(iam: Any, url: str) -> Iterator[str]:
    users = iam.list_users()["Users"]
    groups = iam.list_groups()["Groups"]
    roles = _all(iam, "list_roles", "Roles")
    policies = iam.list_policies(Scope="Local")["Policies"]
    yield (f"IAM at {url}: {len(users)} users, {len(groups)} groups, {len(roles)} roles, "
           f"{len(policies)} policies")
    for u in users:
        name = u["UserName"]
        member_of = [g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]]
        attached = [p["PolicyName"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]]
        inline = iam.list_user_policies(UserName=name)["PolicyNames"]
        keys = [f'{k["AccessKeyId"]}({k["Status"]})' for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
        try:
            iam.get_login_profile(UserName=name)
            console = "yes"
        except iam.exceptions.NoSuchEntityException:
            console = "no"
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
        yield (f"  user {u['Path']}{name}: groups={member_of} policies={attached} inline={inline} "
               f"keys={keys} console={console} owner={tags.get(OWNER_TAG, '-')}")
    for g in groups:
        name = g["GroupName"]
        attached = [p["PolicyName"] for p in iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"]]
        inline = iam.list_group_policies(GroupName=name)["PolicyNames"]
        members = [u["UserName"] for u in iam.get_group(GroupName=name)["Users"]]
        yield f"  group {g['Path']}{name}: policies={attached} inline={inline} members={members}"
    for r in roles:
        name = r["RoleName"]
        # ListRoles leaves out the boundary (as IAM does): GetRole has it.
        role = iam.get_role(RoleName=name)["Role"]
        boundary = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn", "-")
        attached = [p["PolicyName"] for p in _all(iam, "list_attached_role_policies", "AttachedPolicies",
                                                  RoleName=name)]
        inline = _all(iam, "list_role_policies", "PolicyNames", RoleName=name)
        profiles = [f"{p['Path']}{p['InstanceProfileName']}"
                    for p in _all(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name)]
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}
        yield (f"  role {r['Path']}{name}: policies={attached} inline={inline} boundary={boundary} "
               f"instance-profiles={profiles} owner={tags.get(OWNER_TAG, '-')}")
        yield f"    trust {_trust(role.get('AssumeRolePolicyDocument'))}"
    for p in policies:
        yield f"  policy {p['Arn']}: attachments={p['AttachmentCount']} default={p['DefaultVersionId']}"


def main(url: str) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for line in describe(iam, url):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
