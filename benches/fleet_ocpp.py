"""The Python `ocpp` package's ChargePoint as a fleet, for `cargo bench --bench fleet`.

N charge points in one asyncio process (websockets, compression off), each connecting to
<url>/<id> with subprotocol ocpp1.6, at once or along a ramp. Each boots (BootNotification,
StatusNotification Available); once all are booted each runs one short session like the
chargectl fleet's: StatusNotification Preparing, Authorize, StartTransaction,
StatusNotification Charging, a few seconds of charging, StopTransaction, StatusNotification
Finishing and Available. Prints one JSON line with the same figures the Rust fleet reports
(boot latency from a charge point's start until its BootNotification is accepted).

Run with the venv of tests/interop/setup.sh:
    .venv/bin/python benches/fleet_ocpp.py --url ws://127.0.0.1:9000 --count 1000 [--ramp 500]
"""

import argparse
import asyncio
import datetime
import json
import logging
import resource
import time

import websockets
from ocpp.v16 import ChargePoint, call

logging.getLogger("ocpp").setLevel(logging.ERROR)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Fleet:
    def __init__(self, count):
        self.count = count
        self.messages = 0
        self.errors = 0
        self.booted = 0
        self.boot_ms = []
        self.all_booted = asyncio.Event()
        self.sessions_done = 0


async def one(fleet, url, cp_id, t_start, session_s, go):
    cp = None
    try:
        ws = await websockets.connect(
            f"{url}/{cp_id}",
            subprotocols=["ocpp1.6"],
            compression=None,
            open_timeout=300,
            ping_interval=None,
            max_queue=16,
        )
        cp = ChargePoint(cp_id, ws, response_timeout=120)
        reader = asyncio.create_task(cp.start())
        boot = await cp.call(
            call.BootNotification(charge_point_model="Go", charge_point_vendor="Zaptec")
        )
        fleet.messages += 2
        if boot.status != "Accepted":
            fleet.errors += 1
        fleet.boot_ms.append((time.monotonic() - t_start) * 1000)
        fleet.booted += 1
        if fleet.booted == fleet.count:
            fleet.all_booted.set()
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        fleet.messages += 2
        await go.wait()
        tag = f"P{cp_id[-7:]}"
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        await cp.call(call.Authorize(id_tag=tag))
        start = await cp.call(
            call.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=now_iso())
        )
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        fleet.messages += 8
        await asyncio.sleep(session_s)
        await cp.call(
            call.StopTransaction(
                meter_stop=int(session_s * 11),
                timestamp=now_iso(),
                transaction_id=start.transaction_id,
                reason="EVDisconnected",
            )
        )
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        fleet.messages += 6
        fleet.sessions_done += 1
        return ws, reader
    except Exception as e:  # noqa: BLE001 - every failure is counted as an error
        fleet.errors += 1
        logging.getLogger("fleet").warning("%s: %r", cp_id, e)
        return None


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ramp", type=float)
    p.add_argument("--session", type=float, default=2.0)
    a = p.parse_args()
    fleet = Fleet(a.count)
    cpu0 = cpu_s()
    go = asyncio.Event()
    t0 = time.monotonic()
    tasks = []
    for i in range(a.count):
        if a.ramp:
            delay = t0 + i / a.ramp - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        cp_id = f"PY-{i + 1:05}"
        tasks.append(asyncio.create_task(one(fleet, a.url, cp_id, time.monotonic(), a.session, go)))
    try:
        await asyncio.wait_for(fleet.all_booted.wait(), timeout=300)
    except asyncio.TimeoutError:
        pass
    all_booted_s = time.monotonic() - t0 if fleet.all_booted.is_set() else float("nan")
    go.set()
    done = await asyncio.gather(*tasks)
    cpu = cpu_s() - cpu0
    rss = rss_kib()
    errors = fleet.errors + (a.count - fleet.booted) + (a.count - fleet.sessions_done)
    lat = sorted(fleet.boot_ms) or [float("nan")]

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    print(
        json.dumps(
            {
                "n": a.count,
                "all_booted_s": all_booted_s,
                "boot_p50_ms": pct(0.50),
                "boot_p90_ms": pct(0.90),
                "boot_p99_ms": pct(0.99),
                "boot_max_ms": lat[-1],
                "rss_kib": rss,
                "cpu_s": cpu,
                "messages": fleet.messages,
                "cpu_per_msg_us": cpu * 1e6 / max(1, fleet.messages),
                "errors": errors,
            }
        ),
        flush=True,
    )
    for d in done:
        if d:
            ws, reader = d
            reader.cancel()
            await ws.close()


if __name__ == "__main__":
    asyncio.run(main())
