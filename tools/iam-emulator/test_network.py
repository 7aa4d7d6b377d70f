"""The emulator's network-edge behaviours (latency, rate limit, eventual
consistency), through boto3 against the real server process, plus unit tests of
network.py's pieces.

"$(scripts/emulator.sh python)" -m pytest -q tools/iam-emulator/test_network.py
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import network  # noqa: E402

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
LAG_MS = 400
# The lag the consistency tests use: it must outlast the dozen requests a test makes while
# its writes still lag, or a slow machine proves nothing (`within_lag` fails). At least
# LAG_MS, more where a round trip is slow: set by the `server` fixture from a measured one.
_LAG = [LAG_MS]
# Reads may see a write up to granularityMs later than lagMs (network.Consistency).
GRANULARITY_MS = 20


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), f"unexpected first line {line!r}"
        self.url = line.split(" ", 1)[1]

    def client(self) -> Any:
        return boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def network(self, body: Any) -> Any:
        status, out = self.control("POST", "/_emulator/network", body)
        assert status == 200, out
        return out

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        return time.monotonic() - started


def round_trip(iam: Any) -> float:
    """The median time of a plain request, once the operation is warm."""
    iam.list_users()
    times = []
    for _ in range(5):
        t = time.monotonic()
        iam.list_users()
        times.append(time.monotonic() - t)
    return sorted(times)[len(times) // 2]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    # About fifteen requests fit in the lag, twice over.
    _LAG[0] = max(LAG_MS, int(round_trip(s.client()) * 1000 * 30))
    yield s
    s.stop()


@pytest.fixture
def iam(server: Server) -> Any:
    assert server.control("POST", "/_emulator/reset")[0] == 200
    return server.client()


def code_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    try:
        call()
    except ClientError as err:
        r = err.response
        return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]
    return "OK", 200, ""


def user_names(iam: Any) -> set[str]:
    return {u["UserName"] for u in iam.list_users()["Users"]}


def lag() -> int:
    return _LAG[0]


def lagging(server: Server, iam: Any, lag_ms: int | None = None) -> None:
    server.network({"consistency": {"lagMs": lag_ms or lag(), "granularityMs": GRANULARITY_MS}})


def after_lag(written: float, lag_ms: int | None = None) -> None:
    """Sleeps until a write whose response came at `written` is surely readable."""
    lag_ms = lag_ms or lag()
    time.sleep(max(0.0, written + (lag_ms + GRANULARITY_MS + 60) / 1000 - time.monotonic()))


def within_lag(written: float, lag_ms: int | None = None) -> None:
    """The stale reads just made were made while the write was still lagging; a
    slower run proves nothing, so it fails rather than passing by luck."""
    assert time.monotonic() - written < (lag_ms or lag()) / 1000, "reads came too late to see the lag"


# ------------------------------------------------------------------ latency


def test_latency_overlaps_across_concurrent_requests(server: Server, iam: Any) -> None:
    n, ms = 5, 300
    # Each client's first request costs more than the others (botocore sets it up): made
    # before the latency, so that the timings below are the latency and the request.
    clients = [server.client() for _ in range(n)]
    for client in [iam, *clients]:
        client.list_users()
    server.network({"latency": {"ms": ms}})
    started = time.monotonic()
    for _ in range(n):
        iam.list_users()
    serial = time.monotonic() - started
    assert serial >= n * ms / 1000

    barrier = threading.Barrier(n)
    took: list[float] = []
    errors: list[BaseException] = []

    def call(client: Any) -> None:
        try:
            barrier.wait()
            t = time.monotonic()
            client.list_users()
            took.append(time.monotonic() - t)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = time.monotonic() - started
    assert not errors
    # Every call paid the latency, and the latencies overlapped: together they took well
    # under half the serial time (without overlap, as long). Compared with the serial run
    # rather than a fixed bound: the requests' own work, one at a time under the server's
    # GIL, is part of both and grows on a slow machine.
    assert min(took) >= ms / 1000
    assert concurrent < serial / 2, (serial, concurrent)


def test_latency_is_off_after_reset_and_settable_at_runtime(server: Server, iam: Any) -> None:
    assert server.control("GET", "/_emulator/network") == (
        200,
        {"latency": None, "rateLimit": None, "consistency": None},
    )

    def timed() -> float:
        t = time.monotonic()
        iam.get_account_summary()
        return time.monotonic() - t

    # An operation's first request builds its response serializer in moto (up to a few
    # hundred ms on a slow machine): made before timing, so that what is timed is the
    # request alone.
    timed()
    assert timed() < 0.15
    out = server.network({"latency": {"ms": 300}})
    assert out["latency"] == {"ms": 300}
    assert timed() >= 0.3
    server.network({"latency": None})
    assert timed() < 0.15
    server.network({"latency": {"ms": 300}})
    assert server.control("POST", "/_emulator/reset")[0] == 200
    assert server.control("GET", "/_emulator/network")[1]["latency"] is None
    assert timed() < 0.15


def test_latency_distributions() -> None:
    fixed = network.Latency({"ms": 100})
    assert {fixed.sample_ms() for _ in range(10)} == {100.0}

    uniform = network.Latency({"ms": 100, "jitterMs": 30, "seed": 1})
    draws = [uniform.sample_ms() for _ in range(5000)]
    assert 70 <= min(draws) < 72 and 128 < max(draws) <= 130
    assert abs(statistics.mean(draws) - 100) < 2

    lognormal = network.Latency({"medianMs": 100, "p99Ms": 400, "seed": 7})
    draws = sorted(lognormal.sample_ms() for _ in range(20000))
    assert abs(draws[len(draws) // 2] - 100) < 5
    assert abs(draws[int(len(draws) * 0.99)] - 400) < 40
    # Seeded: the same draws again.
    again = network.Latency({"medianMs": 100, "p99Ms": 400, "seed": 7})
    assert sorted(again.sample_ms() for _ in range(20000)) == draws
    unseeded = network.Latency({"medianMs": 100, "p99Ms": 400})
    assert sorted(unseeded.sample_ms() for _ in range(20000)) != draws

    spiky = network.Latency({"ms": 10, "spike": {"probability": 0.1, "ms": 1000}, "seed": 3})
    draws = [spiky.sample_ms() for _ in range(10000)]
    assert set(draws) == {10.0, 1010.0}
    assert 0.08 < draws.count(1010.0) / len(draws) < 0.12

    for bad in (
        {"ms": -1},
        {"ms": "1"},
        {"medianMs": 100},
        {"medianMs": 100, "p99Ms": 50},
        {"ms": 1, "medianMs": 1, "p99Ms": 2},
        {"ms": 1, "spike": {"probability": 2, "ms": 1}},
        {"ms": 1, "colour": "red"},
    ):
        with pytest.raises(network.ConfigError):
            network.Latency(bad)


def test_start_up_flags_survive_reset_and_sigterm_ends_slow_requests() -> None:
    s = Server(
        "--latency",
        '{"ms": 3000}',
        "--network",
        '{"rateLimit": {"writes": {"rate": 1, "burst": 5}}}',
    )
    try:
        expected = {
            "latency": {"ms": 3000},
            "rateLimit": {"writes": {"rate": 1, "burst": 5}},
            "consistency": None,
        }
        assert s.control("GET", "/_emulator/network") == (200, expected)
        s.network({"latency": None, "rateLimit": None})
        assert s.control("POST", "/_emulator/reset")[0] == 200
        assert s.control("GET", "/_emulator/network") == (200, expected)
        # A request sleeping out its latency does not hold up SIGTERM.
        outcome: list[BaseException | None] = []
        client = s.client()

        def slow() -> None:
            try:
                client.list_users()
                outcome.append(None)
            except BaseException as err:  # noqa: BLE001 - checked below
                outcome.append(err)

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        time.sleep(0.3)
    finally:
        took = s.stop()
    assert s.proc.returncode == 0
    assert took < 1.0
    thread.join(timeout=5)
    # The request was still sleeping when the server went: it got no answer.
    assert len(outcome) == 1 and isinstance(outcome[0], BotoCoreError), outcome


def test_bad_network_configuration_is_refused(server: Server, iam: Any) -> None:
    server.network({"latency": {"ms": 5}})
    for bad in (
        [],
        {"latency": {"ms": 1}, "bandwidth": 1},
        {"rateLimit": {"reads": {"rate": -1}}},
        {"rateLimit": {"deletes": {"rate": 1}}},
        {"consistency": {"lagMs": "soon"}},
    ):
        status, out = server.control("POST", "/_emulator/network", bad)
        assert status == 400 and "error" in out, (bad, out)
    # Nothing changed.
    assert server.control("GET", "/_emulator/network")[1]["latency"] == {"ms": 5}
    code = subprocess.run(
        [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--consistency", "{}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert code.returncode == 2 and code.stdout == ""
    assert '"lagMs" is required' in code.stderr


# --------------------------------------------------------------- rate limit


def test_write_burst_beyond_the_bucket_is_throttled_and_counted(
    server: Server, iam: Any
) -> None:
    server.network({"rateLimit": {"writes": {"rate": 1, "burst": 3}}})
    results = [code_of(lambda i=i: iam.create_user(UserName=f"u{i}")) for i in range(6)]
    assert results[:3] == [("OK", 200, "")] * 3
    assert results[3:] == [("Throttling", 400, "Rate exceeded")] * 3
    # A throttled request is not performed, but it is a call.
    assert user_names(iam) == {"u0", "u1", "u2"}
    assert server.control("GET", "/_emulator/calls")[1]["CreateUser"] == 6
    # Reads have no limit here: the write bucket being empty does not matter.
    for _ in range(5):
        iam.get_user(UserName="u0")

    status, rate = server.control("GET", "/_emulator/rate")
    assert status == 200
    assert rate["rateLimit"] == {"writes": {"rate": 1, "burst": 3}}
    assert rate["totals"] == {"reads": 6, "writes": 3, "throttledReads": 0, "throttledWrites": 3}
    series = rate["series"]
    now = int(time.time())
    assert now - 5 <= series[0]["t"] <= series[-1]["t"] <= now
    assert [b["t"] - a["t"] for a, b in zip(series, series[1:])] == [1] * (len(series) - 1)
    for key, total in rate["totals"].items():
        assert sum(row[key] for row in series) == total
    assert server.control("DELETE", "/_emulator/rate") == (200, {})
    assert server.control("GET", "/_emulator/rate")[1]["series"] == []
    # A throttled request does not use up a fault rule: the rule is still there after.
    status, _ = server.control(
        "POST", "/_emulator/faults", {"action": "CreateUser", "code": "ServiceFailure"}
    )
    assert status == 200
    assert code_of(lambda: iam.create_user(UserName="u9"))[0] == "Throttling"
    assert len(server.control("GET", "/_emulator/faults")[1]["faults"]) == 1


def test_the_bucket_refills_at_its_rate(server: Server, iam: Any) -> None:
    # One token a second: the request right after a refill comes well within the second
    # that the next token takes, however slow the machine.
    server.network({"rateLimit": {"writes": {"rate": 1, "burst": 1}}})
    assert code_of(lambda: iam.create_group(GroupName="g0"))[0] == "OK"
    assert code_of(lambda: iam.create_group(GroupName="g1"))[0] == "Throttling"
    time.sleep(1.2)  # 1.2 tokens, capped at the burst of 1
    assert code_of(lambda: iam.create_group(GroupName="g2"))[0] == "OK"
    assert code_of(lambda: iam.create_group(GroupName="g3"))[0] == "Throttling"
    totals = server.control("GET", "/_emulator/rate")[1]["totals"]
    assert (totals["writes"], totals["throttledWrites"]) == (2, 2)


def test_reads_and_writes_have_separate_buckets(server: Server, iam: Any) -> None:
    server.network(
        {"rateLimit": {"reads": {"rate": 0.5, "burst": 2}, "writes": {"rate": 0.5, "burst": 1}}}
    )
    assert [code_of(iam.list_users)[0] for _ in range(3)] == ["OK", "OK", "Throttling"]
    assert code_of(lambda: iam.create_user(UserName="w"))[0] == "OK"
    assert code_of(lambda: iam.create_user(UserName="x"))[0] == "Throttling"
    assert code_of(lambda: iam.get_user(UserName="w"))[0] == "Throttling"
    totals = server.control("GET", "/_emulator/rate")[1]["totals"]
    assert totals == {"reads": 2, "writes": 1, "throttledReads": 2, "throttledWrites": 1}
    # Switched off at runtime: nothing is throttled any more, and reset restores it.
    server.network({"rateLimit": None})
    assert [code_of(iam.list_users)[0] for _ in range(5)] == ["OK"] * 5
    server.network({"rateLimit": {"reads": {"rate": 0.5, "burst": 1}}})
    assert server.control("POST", "/_emulator/reset")[0] == 200
    assert [code_of(iam.list_users)[0] for _ in range(5)] == ["OK"] * 5


# -------------------------------------------------------------- consistency


def test_a_created_user_is_invisible_to_reads_until_the_lag_passes(
    server: Server, iam: Any
) -> None:
    lagging(server, iam)
    iam.create_user(UserName="alice")
    written = time.monotonic()
    assert code_of(lambda: iam.get_user(UserName="alice"))[0] == "NoSuchEntity"
    assert "alice" not in user_names(iam)
    # The write path is consistent: the name is taken already.
    assert code_of(lambda: iam.create_user(UserName="alice"))[0] == "EntityAlreadyExists"
    within_lag(written)
    after_lag(written)
    assert iam.get_user(UserName="alice")["User"]["UserName"] == "alice"
    assert "alice" in user_names(iam)


def test_a_deleted_user_stays_visible_until_the_lag_passes(server: Server, iam: Any) -> None:
    iam.create_user(UserName="bob", Path="/team/")
    lagging(server, iam)
    iam.delete_user(UserName="bob")
    written = time.monotonic()
    assert iam.get_user(UserName="bob")["User"]["Path"] == "/team/"
    assert "bob" in user_names(iam)
    assert code_of(lambda: iam.delete_user(UserName="bob"))[0] == "NoSuchEntity"
    within_lag(written)
    after_lag(written)
    assert code_of(lambda: iam.get_user(UserName="bob"))[0] == "NoSuchEntity"
    assert "bob" not in user_names(iam)


def test_attachments_memberships_and_tags_read_the_state_before_the_write(
    server: Server, iam: Any
) -> None:
    arn = iam.create_policy(PolicyName="p", PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
    iam.create_user(UserName="carol")
    iam.create_group(GroupName="devs")
    lagging(server, iam)
    iam.attach_user_policy(UserName="carol", PolicyArn=arn)
    iam.add_user_to_group(GroupName="devs", UserName="carol")
    iam.put_user_policy(UserName="carol", PolicyName="inline", PolicyDocument=ALLOW_ALL)
    iam.tag_user(UserName="carol", Tags=[{"Key": "team", "Value": "a"}])
    written = time.monotonic()
    assert iam.list_attached_user_policies(UserName="carol")["AttachedPolicies"] == []
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 0
    assert iam.get_group(GroupName="devs")["Users"] == []
    assert iam.list_groups_for_user(UserName="carol")["Groups"] == []
    assert iam.list_user_policies(UserName="carol")["PolicyNames"] == []
    assert iam.list_user_tags(UserName="carol")["Tags"] == []
    # A write acting on the new state sees it: detaching works at once.
    iam.detach_user_policy(UserName="carol", PolicyArn=arn)
    detached = time.monotonic()
    within_lag(written)

    after_lag(written)
    # The attachment's own lag is over, the detachment's is not yet.
    if time.monotonic() < detached + lag() / 1000:
        assert [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName="carol")[
            "AttachedPolicies"
        ]] == [arn]
    assert [u["UserName"] for u in iam.get_group(GroupName="devs")["Users"]] == ["carol"]
    assert iam.list_user_policies(UserName="carol")["PolicyNames"] == ["inline"]
    assert iam.list_user_tags(UserName="carol")["Tags"] == [{"Key": "team", "Value": "a"}]
    after_lag(detached)
    assert iam.list_attached_user_policies(UserName="carol")["AttachedPolicies"] == []


def test_access_keys_and_their_status_lag(server: Server, iam: Any) -> None:
    iam.create_user(UserName="dave")
    lagging(server, iam)
    key = iam.create_access_key(UserName="dave")["AccessKey"]["AccessKeyId"]
    written = time.monotonic()
    assert iam.list_access_keys(UserName="dave")["AccessKeyMetadata"] == []
    within_lag(written)
    after_lag(written)
    listed = iam.list_access_keys(UserName="dave")["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in listed] == [(key, "Active")]

    iam.update_access_key(UserName="dave", AccessKeyId=key, Status="Inactive")
    written = time.monotonic()
    listed = iam.list_access_keys(UserName="dave")["AccessKeyMetadata"]
    assert [k["Status"] for k in listed] == ["Active"]
    within_lag(written)
    after_lag(written)
    listed = iam.list_access_keys(UserName="dave")["AccessKeyMetadata"]
    assert [k["Status"] for k in listed] == ["Inactive"]


def test_login_profiles_groups_policies_and_authorization_details_lag(server: Server, iam: Any) -> None:
    iam.create_user(UserName="erin")
    lagging(server, iam)
    iam.create_login_profile(UserName="erin", Password="Str0ng!Passw0rd")
    iam.create_group(GroupName="ops")
    arn = iam.create_policy(PolicyName="pol", PolicyDocument=ALLOW_ALL)["Policy"]["Arn"]
    written = time.monotonic()
    assert code_of(lambda: iam.get_login_profile(UserName="erin"))[0] == "NoSuchEntity"
    assert code_of(lambda: iam.get_policy(PolicyArn=arn))[0] == "NoSuchEntity"
    assert iam.list_policies(Scope="Local")["Policies"] == []
    assert code_of(lambda: iam.get_group(GroupName="ops"))[0] == "NoSuchEntity"
    details = iam.get_account_authorization_details(Filter=["User", "Group"])
    assert [u["UserName"] for u in details["UserDetailList"]] == ["erin"]
    assert details["GroupDetailList"] == []
    within_lag(written)
    after_lag(written)
    assert iam.get_login_profile(UserName="erin")["LoginProfile"]["UserName"] == "erin"
    details = iam.get_account_authorization_details(Filter=["Group"])
    assert [g["GroupName"] for g in details["GroupDetailList"]] == ["ops"]
    assert [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]] == [arn]


def test_consistency_is_switched_at_runtime_and_by_reset(server: Server, iam: Any) -> None:
    # Off: a read sees the write at once.
    iam.create_user(UserName="f0")
    assert iam.get_user(UserName="f0")["User"]["UserName"] == "f0"
    out = server.network({"consistency": {"lagMs": lag()}})
    assert out["consistency"]["lagMs"] == lag()
    iam.create_user(UserName="f1")
    assert code_of(lambda: iam.get_user(UserName="f1"))[0] == "NoSuchEntity"
    # Switching it off makes the latest state readable at once.
    server.network({"consistency": None})
    assert iam.get_user(UserName="f1")["User"]["UserName"] == "f1"
    server.network({"consistency": {"lagMs": lag()}})
    assert server.control("POST", "/_emulator/reset")[0] == 200
    assert server.control("GET", "/_emulator/network")[1]["consistency"] is None
    iam.create_user(UserName="f2")
    assert iam.get_user(UserName="f2")["User"]["UserName"] == "f2"
    # DELETE switches every behaviour off.
    server.network({"consistency": {"lagMs": lag()}, "latency": {"ms": 1}})
    assert server.control("DELETE", "/_emulator/network")[1] == {
        "latency": None,
        "rateLimit": None,
        "consistency": None,
    }


def test_aged_access_keys_are_aged_in_the_lagging_view_too(server: Server, iam: Any) -> None:
    iam.create_user(UserName="gail")
    key = iam.create_access_key(UserName="gail")["AccessKey"]
    lagging(server, iam)
    iam.tag_user(UserName="gail", Tags=[{"Key": "k", "Value": "v"}])  # a copy is kept now
    status, _ = server.control(
        "POST",
        "/_emulator/age-access-key",
        {"user": "gail", "accessKeyId": key["AccessKeyId"], "seconds": 3600},
    )
    assert status == 200
    listed = iam.list_access_keys(UserName="gail")["AccessKeyMetadata"][0]["CreateDate"]
    assert 3599 <= (key["CreateDate"] - listed).total_seconds() <= 3601


def test_each_write_becomes_readable_between_lag_and_lag_plus_granularity() -> None:
    """network.Consistency with a fake clock: writes every 5 ms for 200 ms, lag
    100 ms, copies at most every 15 ms; reads interleaved in time order."""
    lag, granularity = 0.1, 0.015
    c = network.Consistency({"lagMs": lag * 1000, "granularityMs": granularity * 1000})
    events: list[tuple[float, int, str, int]] = []
    for i in range(40):
        at = i * 0.005
        events.append((at, 1, "write", i))
        events.append((at + lag - 1e-6, 0, "not yet", i))
        events.append((at + lag + granularity + 1e-6, 0, "seen", i))
    live = 0
    checked = 0
    for at, _, what, i in sorted(events):
        if what == "write":
            copied = c.before_write(at, lambda: live)
            live += 1
            c.after_write(at, copied, succeeded=True)
            # A refused write changes nothing and keeps no copy.
            c.after_write(at, c.before_write(at, lambda: live), succeeded=False)
            assert len(c.history) <= math.ceil(lag / granularity) + 2
            continue
        state = c.state_for_read(at)
        seen = live if state is None else state
        # Write i (the (i+1)th) is never seen before the lag, always within lag + granularity.
        assert (seen >= i + 1) == (what == "seen"), (at, what, i, seen)
        checked += 1
    assert checked == 80


def test_rate_series_is_contiguous_per_second_and_filtered_by_since() -> None:
    traffic = network.Traffic()
    traffic.count("reads", 1000.2)
    traffic.count("reads", 1000.9)
    traffic.count("throttledWrites", 1003.5)
    zero = {"reads": 0, "writes": 0, "throttledReads": 0, "throttledWrites": 0}
    assert traffic.describe(None)["series"] == [
        {**zero, "t": 1000, "reads": 2},
        {**zero, "t": 1001},
        {**zero, "t": 1002},
        {**zero, "t": 1003, "throttledWrites": 1},
    ]
    assert [row["t"] for row in traffic.describe(1002)["series"]] == [1002, 1003]
    assert [row["t"] for row in traffic.describe(1001)["series"]] == [1001, 1002, 1003]
    assert [row["t"] for row in traffic.describe(990)["series"]] == [1000, 1001, 1002, 1003]
    assert traffic.describe(1004)["series"] == []
    assert traffic.describe(None)["totals"] == {**zero, "reads": 2, "throttledWrites": 1}
    # Seconds older than an hour before the newest are dropped; the totals stay.
    traffic.count("writes", 1000 + network.SERIES_SECONDS + 2)
    assert traffic.describe(None)["series"][0]["t"] == 1003
    assert traffic.describe(None)["totals"]["reads"] == 2


def test_concurrent_lagging_reads_never_lose_writes(server: Server, iam: Any) -> None:
    """Reads swap a kept state in for moto under the lock; with many threads
    mixing writes and lagging reads, every write still lands in the live state."""
    server.network({"consistency": {"lagMs": 50, "granularityMs": 5}, "latency": {"ms": 10}})
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        client = server.client()
        try:
            for i in range(10):
                client.create_user(UserName=f"c{n}-{i}")
                code = code_of(lambda: client.get_user(UserName=f"c{n}-{i}"))[0]
                assert code in ("OK", "NoSuchEntity"), code
                client.list_users()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    written = time.monotonic()
    after_lag(written, 50)
    expected = {f"c{n}-{i}" for n in range(4) for i in range(10)}
    assert user_names(iam) == expected
    server.network({"consistency": None})
    assert user_names(iam) == expected
