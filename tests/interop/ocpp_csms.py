#!/usr/bin/env python3
"""An OCPP 1.6J CSMS built on the Python `ocpp` package, which validates every message against the
official OCPP 1.6 JSON schemas (validation stays on).

It accepts one charge point (any path; the id is the last segment), answers every charge point
message like the chargectl sandbox CSMS, and once BootNotification has been answered runs a
scenario: a JSON list of steps

    {"call": "ChangeConfiguration", "payload": {...}, "expect": {...subset of the response...}}
    {"call": "Reset", "payload": {...}, "expect_error": "NotSupported"}
    {"wait_for": "StatusNotification", "match": {...subset of the payload...}, "timeout": 10}
    {"act": {"action": "plug"}}     (printed on stdout for the test driving the charger)
    {"sleep": 0.5}

`wait_for` looks at charge point CALLs after the one an earlier `wait_for` matched, including
those that arrived before the step started. The charge point may reconnect (after a Reset): the
scenario goes on over the new connection.

It writes a JSON report (every message received and sent with its action and payload, each
step's result, every schema validation error) and exits 0 only if every step met its
expectation and no message failed validation; 1 otherwise; 2 on bad arguments or scenario.
It stops by itself after --timeout seconds. Once listening it prints {"listening": PORT} on
stdout (useful with --port 0).
"""

import argparse
import asyncio
import base64
import datetime
import hmac
import os
import json
import logging
import sys
import time
from http import HTTPStatus

import websockets
from websockets.asyncio.server import serve
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.exceptions import OCPPError

LOG = logging.getLogger("ocpp_csms")


def now_iso():
    return (
        datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def is_subset(expected, actual):
    """True when every key of `expected` is in `actual` with a matching value (recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual))
        )
    return expected == actual


def camel_to_snake(key):
    out = []
    for ch in key:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


class Report:
    def __init__(self):
        self.started = time.time()
        self.charge_point = None
        self.path = None
        self.subprotocol = None
        self.messages = []
        self.steps = []
        self.validation_errors = []
        self.errors = []
        self.actions_by_id = {}
        self.cursor = 0
        self.changed = asyncio.Event()
        self.connections = []
        self.call_ids = 0
        self.next_transaction_id = 1
        # Set by the first BootNotification; the scenario starts then.
        self.booted = asyncio.Event()
        # The charge point's current connection (None between a disconnection and the next).
        self.cp = None
        self.connected = asyncio.Event()

    def next_call_id(self):
        self.call_ids += 1
        return f"peer-{self.call_ids}"

    def record(self, direction, raw):
        entry = {"time": now_iso(), "direction": direction, "raw": raw}
        try:
            msg = json.loads(raw)
            kind = {2: "Call", 3: "CallResult", 4: "CallError"}.get(msg[0], "Invalid")
            entry["message_type"] = kind
            entry["id"] = msg[1]
            if kind == "Call":
                entry["action"] = msg[2]
                entry["payload"] = msg[3]
                self.actions_by_id[(direction, msg[1])] = msg[2]
            elif kind == "CallResult":
                other = "received" if direction == "sent" else "sent"
                entry["action"] = self.actions_by_id.get((other, msg[1]))
                entry["payload"] = msg[2]
            elif kind == "CallError":
                other = "received" if direction == "sent" else "sent"
                entry["action"] = self.actions_by_id.get((other, msg[1]))
                entry["payload"] = {
                    "errorCode": msg[2],
                    "errorDescription": msg[3],
                    "errorDetails": msg[4],
                }
                if direction == "sent":
                    # We only answer with CALLERROR when the charge point's message failed
                    # schema validation or was not understood.
                    self.validation_errors.append(
                        {
                            "direction": "received",
                            "id": msg[1],
                            "action": entry["action"],
                            "error": entry["payload"],
                        }
                    )
        except (ValueError, IndexError, TypeError, KeyError) as e:
            entry["message_type"] = "Invalid"
            entry["error"] = str(e)
            self.validation_errors.append(
                {"direction": direction, "raw": raw, "error": f"not OCPP-J: {e}"}
            )
        self.messages.append(entry)
        self.changed.set()

    def response_to(self, unique_id):
        for m in self.messages:
            if m["direction"] == "received" and m.get("id") == unique_id and m.get(
                "message_type"
            ) in ("CallResult", "CallError"):
                return m
        return None

    def ok(self):
        return (
            self.charge_point is not None
            and not self.validation_errors
            and not self.errors
            and all(s["ok"] for s in self.steps)
        )

    def to_json(self):
        return {
            "peer": "python-ocpp",
            "ok": self.ok(),
            "charge_point": self.charge_point,
            "path": self.path,
            "subprotocol": self.subprotocol,
            "connections": self.connections,
            "messages": [
                {k: v for k, v in m.items() if k != "raw"} for m in self.messages
            ],
            "steps": self.steps,
            "validation_errors": self.validation_errors,
            "errors": self.errors,
            "duration_s": round(time.time() - self.started, 3),
        }


class RecordingConnection:
    """Wraps the websocket so every raw message lands in the report."""

    def __init__(self, ws, report):
        self.ws = ws
        self.report = report

    async def recv(self):
        raw = await self.ws.recv()
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        self.report.record("received", raw)
        return raw

    async def send(self, raw):
        await self.ws.send(raw)
        self.report.record("sent", raw)


class SandboxLikeCsms(ChargePoint):
    def __init__(self, cp_id, connection, report, interval, response_timeout):
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.report = report
        self.interval = interval
        self._unique_id_generator = report.next_call_id

    @on("BootNotification")
    def on_boot(self, **_):
        self.report.booted.set()
        return call_result.BootNotification(
            current_time=now_iso(), interval=self.interval, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_):
        return call_result.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, **_):
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_):
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def on_start(self, **_):
        # Transaction ids run on across reconnections, like the sandbox's.
        tx = self.report.next_transaction_id
        self.report.next_transaction_id += 1
        return call_result.StartTransaction(
            transaction_id=tx, id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction")
    def on_stop(self, id_tag=None, **_):
        if id_tag is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, **_):
        return call_result.MeterValues()

    @on("DataTransfer")
    def on_data_transfer(self, **_):
        return call_result.DataTransfer(status="UnknownVendorId")

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, **_):
        return call_result.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status(self, **_):
        return call_result.DiagnosticsStatusNotification()

    async def serve_messages(self):
        """Like ChargePoint.start(), but a failure to handle one message is reported instead of
        ending the connection."""
        while True:
            raw = await self._connection.recv()
            try:
                await self.route_message(raw)
            except websockets.exceptions.ConnectionClosed:
                # The charge point went away (a reset) before our answer left: no protocol
                # error. What it sent before closing is still to be read; recv() ends the loop.
                continue
            except Exception as e:  # noqa: BLE001 - any failure is a finding for the report
                self.report.errors.append(f"handling {raw[:200]!r}: {e!r}")


async def current_connection(report, timeout):
    """The charge point's connection, waiting up to `timeout` for it to (re)connect."""
    if report.cp is None:
        try:
            await asyncio.wait_for(report.connected.wait(), timeout)
        except asyncio.TimeoutError:
            return None
    return report.cp


async def run_call_step(report, step, call_timeout):
    action = step["call"]
    payload = step.get("payload", {})
    cls = getattr(call, action, None)
    if cls is None:
        return {"ok": False, "error": f"unknown OCPP 1.6 action {action!r}"}
    try:
        request = cls(**{camel_to_snake(k): v for k, v in payload.items()})
    except TypeError as e:
        return {"ok": False, "error": f"payload does not fit {action}: {e}"}
    cp = await current_connection(report, call_timeout)
    if cp is None:
        return {"ok": False, "error": f"no charge point connected to send {action} to"}
    unique_id = f"peer-{report.call_ids + 1}"
    try:
        await cp.call(request, suppress=False)
        error = None
    except OCPPError as e:
        error = e
    except asyncio.TimeoutError:
        return {"ok": False, "id": unique_id, "error": f"no answer to {action}"}
    answer = report.response_to(unique_id)
    sent = any(
        m["direction"] == "sent" and m.get("id") == unique_id for m in report.messages
    )
    result = {"id": unique_id}
    if answer is None:
        result.update(ok=False, error=f"{action} was not sent: {error!r}")
        if error is not None and not sent:
            report.validation_errors.append(
                {"direction": "sent", "action": action, "error": repr(error)}
            )
        return result
    result["response"] = answer["payload"]
    if answer["message_type"] == "CallError":
        want = step.get("expect_error")
        result["ok"] = want is not None and answer["payload"]["errorCode"] == want
        if not result["ok"]:
            result["error"] = f"CALLERROR {answer['payload']}"
        return result
    if error is not None:
        # The CALLRESULT arrived but failed schema validation.
        report.validation_errors.append(
            {"direction": "received", "id": unique_id, "action": action, "error": repr(error)}
        )
        result.update(ok=False, error=f"response failed validation: {error!r}")
        return result
    if "expect_error" in step:
        result.update(ok=False, error=f"expected CALLERROR {step['expect_error']}")
        return result
    expect = step.get("expect", {})
    result["ok"] = is_subset(expect, answer["payload"])
    if not result["ok"]:
        result["error"] = f"response {answer['payload']} does not contain {expect}"
    return result


async def run_wait_step(report, step):
    action = step["wait_for"]
    match = step.get("match", {})
    deadline = time.monotonic() + float(step.get("timeout", 10))
    while True:
        for i in range(report.cursor, len(report.messages)):
            m = report.messages[i]
            if (
                m["direction"] == "received"
                and m.get("message_type") == "Call"
                and m.get("action") == action
                and is_subset(match, m.get("payload"))
            ):
                report.cursor = i + 1
                return {"ok": True, "id": m["id"], "payload": m["payload"]}
        left = deadline - time.monotonic()
        if left <= 0:
            return {"ok": False, "error": f"no {action} matching {match}"}
        report.changed.clear()
        try:
            await asyncio.wait_for(report.changed.wait(), left)
        except asyncio.TimeoutError:
            pass


async def run_scenario(report, steps, call_timeout):
    await report.booted.wait()
    for index, step in enumerate(steps):
        if "call" in step:
            result = await run_call_step(report, step, call_timeout)
        elif "wait_for" in step:
            result = await run_wait_step(report, step)
        elif "act" in step:
            # The test driving the charger performs the hardware action it reads here.
            print(json.dumps({"act": step["act"], "index": index}), flush=True)
            result = {"ok": True}
        else:
            await asyncio.sleep(float(step["sleep"]))
            result = {"ok": True}
        result = {"index": index, "step": step, **result}
        report.steps.append(result)
        LOG.info("step %d: %s", index, "ok" if result["ok"] else result.get("error"))


STEP_KINDS = ("call", "wait_for", "act", "sleep")


def load_scenario(path):
    with open(path, encoding="utf-8") as f:
        steps = json.load(f)
    if not isinstance(steps, list):
        raise ValueError("the scenario must be a JSON list of steps")
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or sum(k in step for k in STEP_KINDS) != 1:
            raise ValueError(f"step {i}: needs one of {', '.join(STEP_KINDS)}: {step!r}")
        if "sleep" in step and not isinstance(step["sleep"], (int, float)):
            raise ValueError(f"step {i}: \"sleep\" must be a number of seconds")
    return steps


async def main_async(args, steps, report):
    scenario = asyncio.create_task(run_scenario(report, steps, args.call_timeout))

    async def handler(ws):
        if report.cp is not None:
            await ws.close(1008, "this CSMS accepts one charge point at a time")
            return
        path = ws.request.path if ws.request is not None else "/"
        cp_id = ([s for s in path.split("/") if s][-1:] or [""])[0]
        if report.charge_point is not None and cp_id != report.charge_point:
            report.errors.append(f"charge point {cp_id!r} connected after {report.charge_point!r}")
            await ws.close(1008, "another charge point")
            return
        report.charge_point = cp_id
        report.path = path
        report.subprotocol = ws.subprotocol
        connection = {"opened": now_iso(), "path": path, "subprotocol": ws.subprotocol}
        report.connections.append(connection)
        if ws.subprotocol != "ocpp1.6":
            report.errors.append(f"subprotocol {ws.subprotocol!r}, expected 'ocpp1.6'")
        cp = SandboxLikeCsms(
            cp_id,
            RecordingConnection(ws, report),
            report,
            args.interval,
            args.call_timeout,
        )
        report.cp = cp
        report.connected.set()
        serving = asyncio.create_task(cp.serve_messages())
        await asyncio.wait({serving, scenario}, return_when=asyncio.FIRST_COMPLETED)
        # A charge point may reconnect (after a reset, say); the scenario goes on with the next
        # connection and its steps fail if it does not come back in time.
        report.cp = None
        report.connected.clear()
        connection["closed"] = now_iso()
        if serving.done() and not serving.cancelled():
            connection["closed_by"] = "charge point"
        else:
            connection["closed_by"] = "csms"
        serving.cancel()
        await ws.close()

    expected = None
    if args.basic_auth_key_env:
        # SecurityProfile 1: the password is the AuthorizationKey's decoded bytes.
        expected = bytes.fromhex(os.environ.get(args.basic_auth_key_env, ""))

    def check_auth(connection, request):
        if expected is None:
            return None
        header = request.headers.get("Authorization", "")
        password = None
        if header[:6].lower() == "basic ":
            try:
                password = base64.b64decode(header[6:], validate=True).partition(b":")[2]
            except ValueError:
                password = None
        if password is None or not hmac.compare_digest(password, expected):
            report.errors.append("refused a handshake with wrong or no HTTP Basic credentials")
            return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong credentials\n")
        return None

    async with serve(
        handler,
        args.host,
        args.port,
        subprotocols=["ocpp1.6"],
        close_timeout=2,
        process_request=check_auth,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"listening": port}), flush=True)
        try:
            await scenario
        except Exception as e:  # noqa: BLE001 - any failure is a finding for the report
            report.errors.append(f"scenario failed: {e!r}")
        if report.cp is not None:
            await report.cp._connection.ws.close()
        # Let the handler record the close.
        await asyncio.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--scenario", required=True, help="JSON list of steps")
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    parser.add_argument("--timeout", type=float, default=60, help="overall limit, seconds")
    parser.add_argument("--interval", type=int, default=300, help="BootNotification interval")
    parser.add_argument("--call-timeout", type=float, default=15, help="per CALL, seconds")
    parser.add_argument(
        "--basic-auth-key-env",
        help="require HTTP Basic with the AuthorizationKey (hex) in this environment variable",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr
    )
    if not args.verbose:
        # The library logs every rejected message with a traceback; the report has them.
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)
    try:
        steps = load_scenario(args.scenario)
    except (OSError, ValueError) as e:
        print(f"ocpp_csms.py: {args.scenario}: {e}", file=sys.stderr)
        return 2
    report = Report()
    try:
        asyncio.run(asyncio.wait_for(main_async(args, steps, report), args.timeout))
    except asyncio.TimeoutError:
        report.errors.append(f"overall timeout of {args.timeout}s reached")
    except OSError as e:
        report.errors.append(f"cannot listen on {args.host}:{args.port}: {e}")
    if report.charge_point is None:
        report.errors.append("no charge point connected")
    if len(report.steps) < len(steps):
        report.errors.append(f"only {len(report.steps)} of {len(steps)} steps ran")
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(report.to_json(), f, indent=2)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
