"""Prints what an IAM endpoint holds: users (groups, policies, keys, console access),
groups (policies, members) and customer-managed policies. Never prints secrets.

    python iam_state.py http://127.0.0.1:PORT
"""

import sys

import boto3


def main(url: str) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    users = iam.list_users()["Users"]
    groups = iam.list_groups()["Groups"]
    policies = iam.list_policies(Scope="Local")["Policies"]
    print(f"IAM at {url}: {len(users)} users, {len(groups)} groups, {len(policies)} policies")
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
        print(f"  user {u['Path']}{name}: groups={member_of} policies={attached} inline={inline} "
              f"keys={keys} console={console} owner={tags.get('iam.kubeop.dev/owner', '-')}")
    for g in groups:
        name = g["GroupName"]
        attached = [p["PolicyName"] for p in iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"]]
        inline = iam.list_group_policies(GroupName=name)["PolicyNames"]
        members = [u["UserName"] for u in iam.get_group(GroupName=name)["Users"]]
        print(f"  group {g['Path']}{name}: policies={attached} inline={inline} members={members}")
    for p in policies:
        print(f"  policy {p['Arn']}: attachments={p['AttachmentCount']} default={p['DefaultVersionId']}")


if __name__ == "__main__":
    main(sys.argv[1])
