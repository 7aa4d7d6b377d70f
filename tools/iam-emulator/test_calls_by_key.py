"""Call counts per access key id (GET /_emulator/calls?by=access-key), through boto3
against the real server process.

"$(scripts/emulator.sh python)" -m pytest -q tools/iam-emulator/test_calls_by_key.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), f"unexpected first line {line!r}"
        self.url = line.split(" ", 1)[1]

    def client(self, service: str, key: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def control(self, method: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


def test_calls_are_counted_per_access_key_and_service(server: Server) -> None:
    assert server.control("POST", "/_emulator/reset")[0] == 200
    a = server.client("iam", "leaderA")
    b = server.client("iam", "leaderB")
    a.create_user(UserName="alice")
    a.get_user(UserName="alice")
    b.get_user(UserName="alice")
    b.get_user(UserName="alice")
    with pytest.raises(a.exceptions.NoSuchEntityException):
        a.get_user(UserName="nobody")  # failed calls count too
    server.client("sts", "leaderA").get_caller_identity()

    assert server.control("GET", "/_emulator/calls?by=access-key") == (
        200,
        {"leaderA": {"CreateUser": 1, "GetUser": 2}, "leaderB": {"GetUser": 2}},
    )
    assert server.control("GET", "/_emulator/calls?by=access-key&service=sts") == (
        200,
        {"leaderA": {"GetCallerIdentity": 1}},
    )
    # The totals are unchanged by the split.
    assert server.control("GET", "/_emulator/calls") == (200, {"CreateUser": 1, "GetUser": 4})


def test_clearing_and_resetting_clear_the_counts_per_key(server: Server) -> None:
    for clear in (("DELETE", "/_emulator/calls"), ("POST", "/_emulator/reset")):
        server.client("iam", "leaderA").list_users()
        assert server.control("GET", "/_emulator/calls?by=access-key")[1] != {}
        assert server.control(*clear)[0] == 200
        assert server.control("GET", "/_emulator/calls?by=access-key") == (200, {})


def test_an_unknown_grouping_is_rejected(server: Server) -> None:
    status, body = server.control("GET", "/_emulator/calls?by=region")
    assert status == 400
    assert "access-key" in body["error"]


def test_an_access_key_can_be_aged_for_rotation_tests(server: Server) -> None:
    iam = server.client("iam", "testing")
    iam.create_user(UserName="ager")
    key = iam.create_access_key(UserName="ager")["AccessKey"]
    before = key["CreateDate"]
    body = json.dumps({"user": "ager", "accessKeyId": key["AccessKeyId"], "seconds": 7200})
    req = urllib.request.Request(
        server.url + "/_emulator/age-access-key", data=body.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    listed = iam.list_access_keys(UserName="ager")["AccessKeyMetadata"][0]["CreateDate"]
    assert 7199 <= (before - listed).total_seconds() <= 7201
    bad = urllib.request.Request(
        server.url + "/_emulator/age-access-key",
        data=json.dumps({"user": "ager", "accessKeyId": "AKIANOPE", "seconds": 1}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=10)
    assert err.value.code == 404
