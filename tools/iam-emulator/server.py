"""The iam-operator IAM emulator: moto's server plus strict_iam.py and test controls.

    python server.py [--host 127.0.0.1] --port N [--log-requests]
                     [--network JSON] [--latency JSON] [--rate-limit JSON] [--consistency JSON]

Prints exactly one line on stdout, ``READY http://HOST:PORT``, once the socket
is listening (``--port 0`` picks a free port; read it from that line), then
serves until SIGTERM/SIGINT. Logs go to stderr; per-request logs only with
--log-requests, so a caller that never drains stderr cannot stall the server.

Environment: INITIAL_NO_AUTH_ACTION_COUNT (moto's authentication switch) is
honoured as moto reads it. MOTO_IAM_LOAD_MANAGED_POLICIES defaults to "true"
here (real IAM has the AWS managed policies); set it to "false" to skip them.

Test controls live under /_emulator/ (JSON) and never go through moto's
authentication; see README.md for the full contract. GET
/_emulator/calls?by=access-key (optionally &service=sts) counts the same calls
per SigV4 access key id: {"AKID": {"CreateUser": 1}}; unsigned requests are
counted in the totals only.

Network behaviour (network.py): per-request latency, an account-wide token-bucket
rate limit for reads and writes, and reads that lag writes. Set at start with
--network (or $IAM_EMULATOR_NETWORK) and --latency/--rate-limit/--consistency,
changed at runtime with POST /_emulator/network, counted by GET /_emulator/rate.
Requests are served by threads; moto runs one request at a time under a lock,
and latency is slept outside it, so delays of concurrent requests overlap.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from network import SECTIONS, ConfigError, Network, is_read, snapshot_backends  # noqa: E402

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _json_response(start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload, sort_keys=True).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    start_response(
        f"{status} {reason.get(status, 'Unknown')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class FaultError(ValueError):
    pass


class Fault:
    """One fault rule: the next `count` IAM requests whose Action matches fail
    (or are delayed, or have their response dropped)."""

    _next_id = 1

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise FaultError("a fault is a JSON object")
        unknown = set(spec) - {
            "action",
            "code",
            "status",
            "message",
            "count",
            "drop",
            "delay_ms",
            "probability",
            "seed",
        }
        if unknown:
            raise FaultError(f"unknown fault fields: {sorted(unknown)}")
        action = spec.get("action")
        if not isinstance(action, str) or not action:
            raise FaultError('"action" (an IAM Action name or "*") is required')
        self.action = action
        self.code = spec.get("code")
        self.drop = spec.get("drop", False)
        if self.drop is True:
            self.drop = "close"
        if self.drop not in (False, None, "close", "500"):
            raise FaultError('"drop" is true, "close" or "500"')
        self.drop = self.drop or None
        self.delay_ms = spec.get("delay_ms", 0)
        if not isinstance(self.delay_ms, (int, float)) or self.delay_ms < 0:
            raise FaultError('"delay_ms" is a non-negative number')
        if self.code is not None and not isinstance(self.code, str):
            raise FaultError('"code" is a string')
        if self.code and self.drop:
            raise FaultError('"code" and "drop" exclude each other')
        if not (self.code or self.drop or self.delay_ms):
            raise FaultError('a fault needs "code", "drop" or "delay_ms"')
        self.status = int(
            spec.get("status", 500 if self.code in ("ServiceFailure", "InternalFailure") else 400)
        )
        if not 400 <= self.status <= 599:
            raise FaultError('"status" is an HTTP error status (400-599)')
        self.message = str(spec.get("message", self.code or ""))
        self.count = int(spec.get("count", 1))
        if self.count == 0 or self.count < -1:
            raise FaultError('"count" is a positive number, or -1 for "until cleared"')
        # A rule with a probability applies to that share of the matching requests (drawn
        # per request, reproducibly with "seed"); the others pass it by, to the next rule.
        # Several such rules mix faults in chosen proportions at a chosen overall rate.
        probability = spec.get("probability", 1)
        if (
            isinstance(probability, bool)
            or not isinstance(probability, (int, float))
            or not 0 < probability <= 1
        ):
            raise FaultError('"probability" is a number in (0, 1]')
        self.probability = float(probability)
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise FaultError('"seed" is an integer or a string')
        self.seed = seed
        self.random = random.Random(seed)
        self.hits = 0
        self.id = Fault._next_id
        Fault._next_id += 1

    def matches(self, action: str) -> bool:
        return self.count != 0 and self.action in ("*", action)

    def fires(self) -> bool:
        """Whether the rule applies to this matching request (the caller holds the lock)."""
        return self.probability >= 1 or self.random.random() < self.probability

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "action": self.action,
            "count": self.count,
            "hits": self.hits,
        }
        if self.code:
            out.update(code=self.code, status=self.status, message=self.message)
        if self.drop:
            out["drop"] = self.drop
        if self.delay_ms:
            out["delay_ms"] = self.delay_ms
        if self.probability < 1:
            out["probability"] = self.probability
        if self.seed is not None:
            out["seed"] = self.seed
        return out


class Controls:
    """Fault rules and call counters, shared by all request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, Counter[str]] = {}
        # service -> access key id -> action -> count
        self.calls_by_key: dict[str, dict[str, Counter[str]]] = {}
        self.faults: list[Fault] = []

    def record(self, service: str, action: str, access_key: str | None = None) -> None:
        with self.lock:
            self.calls.setdefault(service, Counter())[action] += 1
            if access_key is not None:
                by_key = self.calls_by_key.setdefault(service, {})
                by_key.setdefault(access_key, Counter())[action] += 1

    def take_fault(self, service: str, action: str) -> Fault | None:
        with self.lock:
            if service != "iam":
                return None
            for fault in self.faults:
                if fault.matches(action) and fault.fires():
                    fault.hits += 1
                    if fault.count > 0:
                        fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
            return None

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()
            self.calls_by_key.clear()
            self.faults.clear()


def _request_access_key(environ: Environ) -> str | None:
    """The access key id a SigV4-signed request names (``Credential=AKID/date/...``)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth.startswith("AWS4-HMAC-SHA256"):
        return None
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
    except IndexError:
        return None
    key = scope.split("/", 1)[0].strip()
    return key or None


def _request_service_action(environ: Environ) -> tuple[str | None, str | None]:
    """(signing service, Action) of a query-protocol request, as moto routes it."""
    service = None
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth.startswith("AWS4-HMAC-SHA256"):
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
            service = scope.split("/")[3].lower()
        except IndexError:
            service = None
    params: dict[str, list[str]] = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" not in params and environ.get("REQUEST_METHOD") == "POST":
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(body)
            params = parse_qs(body.decode("utf-8", "replace"))
    actions = params.get("Action")
    return service, (actions[0] if actions else None)


# The raw body of the request moto is handling (moto runs one request at a time).
_RAW_BODY = threading.local()


def _raw_body(environ: Environ) -> bytes:
    """The request's body as sent, leaving it readable for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def sign_over_raw_body() -> None:
    """Checks a signature over the bytes the client sent, as AWS does. moto's server
    rebuilds a form body from its parsed fields first, encoding a space as `+` where SDKs
    sign `%20`, so any parameter with a space (a description) failed authentication."""
    from moto.iam import access_control

    original = access_control.IAMRequestBase._create_aws_request

    def create(self: Any) -> Any:
        request = original(self)
        raw = getattr(_RAW_BODY, "body", b"")
        if raw:
            request.data = raw
        return request

    access_control.IAMRequestBase._create_aws_request = create


def _read_json(environ: Environ) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) if length > 0 else b"null")


def _iam_backends() -> dict[tuple[str, str], Any]:
    """moto's IAM backends that exist, by (account, partition). dict's own
    methods, so that looking does not create the backends of other partitions.
    The default account's is created first if a reset left none: a copy of the
    state before the first write after a reset must hold that (empty) backend,
    or reads would fall through to the live one."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam_backends[os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)]["aws"]
    return {
        (account, partition): backend
        for account, per_account in dict.items(iam_backends)
        for partition, backend in dict.items(per_account)
    }


def _swap_iam_backends(state: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Puts `state`'s backends in moto's place; returns the ones it replaced."""
    from moto.iam.models import iam_backends

    replaced = {}
    for (account, partition), backend in state.items():
        per_account = dict.get(iam_backends, account)
        if per_account is None:
            continue
        replaced[(account, partition)] = dict.get(per_account, partition)
        dict.__setitem__(per_account, partition, backend)
    return replaced


def _query_error_shape(body: bytes) -> bytes:
    """moto's authentication errors come as ``<ErrorResponse><Errors><Error>`` (the EC2
    shape); IAM and STS answer ``<ErrorResponse><Error>``, which is what SDKs parse."""
    if b"<ErrorResponse><Errors><Error>" not in body:
        return body
    return body.replace(b"<Errors>", b"", 1).replace(b"</Errors>", b"", 1)


class EmulatorApp:
    """WSGI middleware in front of moto's DomainDispatcherApplication."""

    def __init__(
        self,
        moto_app: Callable[..., Iterable[bytes]],
        controls: Controls,
        network: Network | None = None,
    ) -> None:
        self.moto_app = moto_app
        self.controls = controls
        self.network = network or Network()
        # moto's backends are not thread-safe (a listing can meet a dict that
        # another request thread is growing); real IAM answers each request
        # against one consistent state, so moto handles one request at a time.
        self.moto_lock = threading.Lock()

    def call_moto(
        self, environ: Environ, start_response: StartResponse, action: str | None = None
    ) -> list[bytes]:
        """Runs moto under the lock. `action` is the IAM Action (None for anything
        else): with eventual consistency on, a read (Get*/List*) runs against the
        state of `lagMs` ago, and a write keeps a copy of the state it changes."""
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return lambda data: None

        raw = _raw_body(environ) if environ.get("REQUEST_METHOD") == "POST" else b""

        def run() -> bytes:
            _RAW_BODY.body = raw
            result = self.moto_app(environ, capture)
            try:
                return b"".join(result)
            finally:
                _RAW_BODY.body = b""
                close = getattr(result, "close", None)
                if close:
                    close()

        with self.moto_lock:
            consistency = self.network.consistency
            if action is None or consistency is None or consistency.lag <= 0:
                body = run()
            elif is_read(action):
                state = consistency.state_for_read(time.monotonic())
                if state is None:
                    body = run()
                else:
                    live = _swap_iam_backends(state)
                    try:
                        body = run()
                    finally:
                        _swap_iam_backends(live)
            else:
                copied = consistency.before_write(
                    time.monotonic(), lambda: snapshot_backends(_iam_backends())
                )
                body = run()
                succeeded = bool(captured) and int(str(captured[0]).split(" ", 1)[0]) < 400
                consistency.after_write(time.monotonic(), copied, succeeded)
        status, headers, exc_info = captured
        body = _query_error_shape(body)
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]
        start_response(status, headers, exc_info)
        return [body]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return self.control(environ, start_response, path[len("/_emulator") :].strip("/"))
        if path.rstrip("/") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            self.controls.clear()
            with self.moto_lock:
                self.network.reset()
            return self.call_moto(environ, start_response)

        service, action = _request_service_action(environ)
        if not (service and action):
            return self.call_moto(environ, start_response)
        self.controls.record(service, action, _request_access_key(environ))
        if service != "iam":
            return self.call_moto(environ, start_response)
        # The round trip: half of it before IAM handles the request, half after,
        # always outside the moto lock, so concurrent requests' delays overlap.
        delay = self.network.delay_ms() / 1000.0
        if delay:
            time.sleep(delay / 2)
        try:
            return self.handle_iam(environ, start_response, action)
        finally:
            if delay:
                time.sleep(delay / 2)

    def handle_iam(
        self, environ: Environ, start_response: StartResponse, action: str
    ) -> Iterable[bytes]:
        if not self.network.admit(action):
            return self.iam_error(start_response, 400, "Throttling", "Rate exceeded")
        fault = self.controls.take_fault("iam", action)
        if fault is None:
            return self.call_moto(environ, start_response, action)
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000.0)
        if fault.code:
            return self.iam_error(start_response, fault.status, fault.code, fault.message)
        if fault.drop:
            # The action takes effect; its response never reaches the client.
            self.run_and_discard(environ, action)
            if fault.drop == "500":
                return self.iam_error(
                    start_response,
                    500,
                    "ServiceFailure",
                    "Request processing has failed due to some unknown error, exception or failure.",
                )
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # werkzeug treats this as a dropped connection and writes nothing.
            raise ConnectionAbortedError("response dropped by iam-emulator fault")
        return self.call_moto(environ, start_response, action)

    def run_and_discard(self, environ: Environ, action: str | None = None) -> None:
        self.call_moto(environ, lambda *args, **kwargs: lambda data: None, action)

    @staticmethod
    def iam_error(
        start_response: StartResponse, status: int, code: str, message: str
    ) -> list[bytes]:
        from strict_iam import iam_error_body
        import secrets

        request_id = secrets.token_hex(16)
        body = iam_error_body(code, message, sender=status < 500, request_id=request_id).encode()
        start_response(
            f"{status} {code}",
            [
                ("Content-Type", "text/xml"),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", request_id),
            ],
        )
        return [body]

    def control(self, environ: Environ, start_response: StartResponse, route: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        c = self.controls
        if route == "health" and method == "GET":
            return _json_response(start_response, 200, {"status": "ok"})
        if route == "reset" and method == "POST":
            from moto.moto_api._internal.models import moto_api_backend

            with self.moto_lock:
                moto_api_backend.reset()
                # Kept copies of the state are of the old backends: drop them too.
                self.network.reset()
            c.clear()
            return _json_response(start_response, 200, {"status": "ok"})
        if route == "network":
            if method == "GET":
                return _json_response(start_response, 200, self.network.describe())
            if method in ("POST", "DELETE"):
                try:
                    spec = (
                        {section: None for section in SECTIONS}
                        if method == "DELETE"
                        else _read_json(environ)
                    )
                    with self.moto_lock:
                        described = self.network.update(spec)
                except (ConfigError, ValueError, TypeError) as err:
                    return _json_response(start_response, 400, {"error": str(err)})
                return _json_response(start_response, 200, described)
            return _json_response(start_response, 405, {"error": "GET, POST or DELETE"})
        if route == "rate":
            if method == "GET":
                query = parse_qs(environ.get("QUERY_STRING", ""))
                try:
                    since = int(query["since"][0]) if "since" in query else None
                except ValueError:
                    return _json_response(start_response, 400, {"error": "since is a unix second"})
                return _json_response(start_response, 200, self.network.rate(since))
            if method == "DELETE":
                self.network.clear_traffic()
                return _json_response(start_response, 200, {})
            return _json_response(start_response, 405, {"error": "GET or DELETE"})
        if route == "calls":
            if method == "GET":
                query = parse_qs(environ.get("QUERY_STRING", ""))
                service = query.get("service", ["iam"])[0]
                by = query.get("by", [None])[0]
                if by not in (None, "access-key"):
                    return _json_response(start_response, 400, {"error": 'by is "access-key"'})
                with c.lock:
                    if by == "access-key":
                        counts: Any = {
                            key: dict(actions)
                            for key, actions in c.calls_by_key.get(service, {}).items()
                        }
                    else:
                        counts = dict(c.calls.get(service, Counter()))
                return _json_response(start_response, 200, counts)
            if method == "DELETE":
                with c.lock:
                    c.calls.clear()
                    c.calls_by_key.clear()
                return _json_response(start_response, 200, {})
            return _json_response(start_response, 405, {"error": "GET or DELETE"})
        if route == "age-access-key" and method == "POST":
            # Ages an access key (its CreateDate moves back), so rotation by age can be
            # tested with IAM-sized periods instead of waiting them out.
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                spec = json.loads(environ["wsgi.input"].read(length) if length > 0 else b"null")
                user, key_id, seconds = spec["user"], spec["accessKeyId"], float(spec["seconds"])
            except (ValueError, TypeError, KeyError) as err:
                return _json_response(start_response, 400, {"error": f"bad request: {err}"})
            with self.moto_lock:
                # The kept copies (eventual consistency) age too: the key was never younger.
                consistency = self.network.consistency
                states = [state for _, state in consistency.history] if consistency else []
                aged = False
                for iam in [*_iam_backends().values(), *(b for s in states for b in s.values())]:
                    found = iam.users.get(user)
                    key = found and found.access_keys and next(
                        (k for k in found.access_keys if k.access_key_id == key_id), None
                    )
                    if key:
                        key.create_date = key.create_date - datetime.timedelta(seconds=seconds)
                        aged = True
                if aged:
                    return _json_response(start_response, 200, {"aged": key_id})
            return _json_response(start_response, 404, {"error": f"no key {key_id} of {user}"})
        if route == "age-session" and method == "POST":
            # Moves an STS session's expiry back, so expiry can be tested without
            # waiting out STS's 15-minute minimum duration.
            import strict_mfa
            import strict_sts

            try:
                spec = _read_json(environ)
                key_id, seconds = spec["accessKeyId"], float(spec["seconds"])
            except (ValueError, TypeError, KeyError) as err:
                return _json_response(start_response, 400, {"error": f"bad request: {err}"})
            with self.moto_lock:
                # Assumed-role sessions, then users' GetSessionToken sessions.
                if strict_sts.age_session(key_id, seconds) or strict_mfa.age_session(key_id, seconds):
                    return _json_response(start_response, 200, {"aged": key_id})
            return _json_response(start_response, 404, {"error": f"no session {key_id}"})
        if route == "faults":
            if method == "GET":
                with c.lock:
                    active = [f.describe() for f in c.faults]
                return _json_response(start_response, 200, {"faults": active})
            if method == "DELETE":
                with c.lock:
                    cleared = len(c.faults)
                    c.faults.clear()
                return _json_response(start_response, 200, {"cleared": cleared})
            if method == "POST":
                try:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    raw = environ["wsgi.input"].read(length) if length > 0 else b""
                    spec = json.loads(raw or b"null")
                    specs = spec if isinstance(spec, list) else [spec]
                    faults = [Fault(s) for s in specs]
                except (ValueError, TypeError) as err:
                    return _json_response(start_response, 400, {"error": str(err)})
                with c.lock:
                    c.faults.extend(faults)
                described = [f.describe() for f in faults]
                return _json_response(
                    start_response, 200, described if isinstance(spec, list) else described[0]
                )
            return _json_response(start_response, 405, {"error": "GET, POST or DELETE"})
        return _json_response(start_response, 404, {"error": f"no control {route!r}"})


def warm_up(moto_app: Callable[..., Iterable[bytes]]) -> None:
    """Send one IAM and one STS request in-process before READY, so that the
    first real request does not pay for building moto's Flask apps, the IAM
    backend and the botocore models (about a second)."""
    from werkzeug.test import Client

    from moto.core.responses import ActionAuthenticatorMixin

    client = Client(moto_app)
    for service, body in (
        ("iam", "Action=ListUsers&Version=2010-05-08"),
        ("sts", "Action=GetCallerIdentity&Version=2011-06-15"),
    ):
        auth = (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/"
            f"{service}/aws4_request, SignedHeaders=host, Signature=0"
        )
        client.post(
            "/",
            data=body,
            headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
    # The warm-up must not use up INITIAL_NO_AUTH_ACTION_COUNT's free requests.
    ActionAuthenticatorMixin.request_count = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    parser.add_argument(
        "--network",
        metavar="JSON",
        default=os.environ.get("IAM_EMULATOR_NETWORK"),
        help='start-up network behaviour, as POST /_emulator/network takes it: '
        '{"latency": ..., "rateLimit": ..., "consistency": ...} '
        "(default: $IAM_EMULATOR_NETWORK)",
    )
    parser.add_argument("--latency", metavar="JSON", help='e.g. {"ms": 100, "jitterMs": 20}')
    parser.add_argument(
        "--rate-limit", metavar="JSON", help='e.g. {"reads": {"rate": 20, "burst": 40}}'
    )
    parser.add_argument("--consistency", metavar="JSON", help='e.g. {"lagMs": 2000}')
    args = parser.parse_args(argv)
    startup: dict[str, Any] = {}
    try:
        if args.network:
            startup = json.loads(args.network)
            if not isinstance(startup, dict):
                raise ConfigError("--network is a JSON object")
        for section, flag in (
            ("latency", args.latency),
            ("rateLimit", args.rate_limit),
            ("consistency", args.consistency),
        ):
            if flag is not None:
                startup[section] = json.loads(flag)
        network = Network(startup)
    except (ConfigError, ValueError) as err:
        parser.error(f"network configuration: {err}")

    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    import strict_iam
    import strict_mfa
    import strict_sts

    strict_iam.install()
    strict_sts.install()
    strict_mfa.install()  # wraps strict_sts's authorization: after it
    sign_over_raw_body()
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.log_requests else logging.ERROR)

    app = EmulatorApp(DomainDispatcherApplication(create_backend_app), Controls(), network)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_address[1]
    os.environ.setdefault("MOTO_PORT", str(port))
    warm_up(app.moto_app)
    # Everything loaded so far (botocore models, moto, the policy prototypes)
    # lives until exit: keep it out of the collector's full passes, which
    # otherwise cost ~0.2 s each and run often while a reset churns objects.
    gc.collect()
    gc.freeze()
    print(f"READY http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
