"""The state dump of `scripts/run-local.sh iam` (iam_state.py), against moto in process."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam_state  # noqa: E402

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                   "Action": ["sts:AssumeRole", "sts:TagSession"]}],
}
BOUNDARY = "arn:aws:iam::123456789012:policy/k8s/tenant-boundary"


@pytest.fixture
def iam() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("iam", region_name="us-east-1")


def test_roles_are_listed_with_trust_policies_boundary_and_instance_profiles(iam: Any) -> None:
    iam.create_role(RoleName="app", Path="/k8s/", AssumeRolePolicyDocument=json.dumps(TRUST),
                    PermissionsBoundary=BOUNDARY, Tags=[{"Key": "iam.kubeop.dev/owner", "Value": "ns/app"}])
    reader = iam.create_policy(PolicyName="reader", Path="/k8s/", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    iam.attach_role_policy(RoleName="app", PolicyArn=reader["Policy"]["Arn"])
    iam.put_role_policy(RoleName="app", PolicyName="own", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
    iam.create_instance_profile(InstanceProfileName="app", Path="/k8s/")
    iam.add_role_to_instance_profile(InstanceProfileName="app", RoleName="app")
    iam.create_role(RoleName="bare", AssumeRolePolicyDocument=json.dumps(TRUST))

    lines = list(iam_state.describe(iam, "http://emulator"))

    assert lines[0] == "IAM at http://emulator: 0 users, 0 groups, 2 roles, 1 policies"
    app = lines.index(
        "  role /k8s/app: policies=['reader'] inline=['own'] "
        f"boundary={BOUNDARY} instance-profiles=['/k8s/app'] owner=ns/app"
    )
    trust = lines[app + 1]
    assert trust.startswith("    trust ")
    assert json.loads(trust.removeprefix("    trust ")) == TRUST
    assert "  role /bare: policies=[] inline=[] boundary=- instance-profiles=[] owner=-" in lines


def test_no_secret_is_printed(iam: Any) -> None:
    iam.create_user(UserName="dev")
    key = iam.create_access_key(UserName="dev")["AccessKey"]
    iam.create_login_profile(UserName="dev", Password="A-very-secret-password-1")
    text = "\n".join(iam_state.describe(iam, "http://emulator"))
    assert key["AccessKeyId"] in text
    assert key["SecretAccessKey"] not in text
    assert "A-very-secret-password-1" not in text
