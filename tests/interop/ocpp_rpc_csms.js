#!/usr/bin/env node
// An OCPP 1.6J CSMS built on the npm package `ocpp-rpc` in strict mode (every inbound call and
// every response is validated against the official OCPP 1.6 JSON schemas).
//
// Same command line, scenario and report format as ocpp_csms.py:
//   node ocpp_rpc_csms.js --port N --scenario FILE --report FILE [--timeout S] [--interval S]
// It accepts one charge point (which may reconnect, after a Reset say), answers every charge point
// message like the chargectl sandbox CSMS, runs the scenario after the first BootNotification
// (steps: call, wait_for, act — printed on stdout for the test driving the charger —, sleep),
// writes the report and exits 0 only if every step met its expectation and no message failed
// validation (1 otherwise, 2 on bad arguments).
// Once listening it prints {"listening": PORT} on stdout.
'use strict';

const fs = require('fs');
const { RPCServer, createRPCError } = require('ocpp-rpc');

function parseArgs(argv) {
    const args = { host: '127.0.0.1', timeout: 60, interval: 300, callTimeout: 15 };
    const names = {
        '--port': 'port', '--host': 'host', '--scenario': 'scenario', '--report': 'report',
        '--timeout': 'timeout', '--interval': 'interval', '--call-timeout': 'callTimeout',
    };
    for (let i = 0; i < argv.length; i += 2) {
        const key = names[argv[i]];
        if (!key || i + 1 >= argv.length) {
            throw new Error(`unknown or incomplete argument ${JSON.stringify(argv[i])}`);
        }
        args[key] = argv[i + 1];
    }
    for (const k of ['port', 'scenario', 'report']) {
        if (args[k] === undefined) throw new Error(`--${k} is required`);
    }
    for (const k of ['port', 'timeout', 'interval', 'callTimeout']) {
        args[k] = Number(args[k]);
        if (!Number.isFinite(args[k])) throw new Error(`${k} must be a number`);
    }
    return args;
}

// Resolves when `promise` settles or after `ms`, whichever comes first (a peer that never answers
// the WebSocket close handshake must not keep this process alive).
function settleWithin(promise, ms) {
    let timer;
    const limit = new Promise((r) => { timer = setTimeout(r, ms); });
    return Promise.race([Promise.resolve(promise).catch(() => {}), limit]).finally(() => clearTimeout(timer));
}

function isSubset(expected, actual) {
    if (Array.isArray(expected)) {
        return Array.isArray(actual) && expected.length === actual.length
            && expected.every((e, i) => isSubset(e, actual[i]));
    }
    if (expected !== null && typeof expected === 'object') {
        return actual !== null && typeof actual === 'object' && !Array.isArray(actual)
            && Object.keys(expected).every((k) => k in actual && isSubset(expected[k], actual[k]));
    }
    return expected === actual;
}

const STEP_KINDS = ['call', 'wait_for', 'act', 'sleep'];

function loadScenario(path) {
    const steps = JSON.parse(fs.readFileSync(path, 'utf8'));
    if (!Array.isArray(steps)) throw new Error('the scenario must be a JSON list of steps');
    steps.forEach((step, i) => {
        if (!step || typeof step !== 'object' || STEP_KINDS.filter((k) => k in step).length !== 1) {
            throw new Error(`step ${i}: needs one of ${STEP_KINDS.join(', ')}: ${JSON.stringify(step)}`);
        }
        if ('sleep' in step && typeof step.sleep !== 'number') {
            throw new Error(`step ${i}: "sleep" must be a number of seconds`);
        }
    });
    return steps;
}

class Report {
    constructor() {
        this.started = Date.now();
        this.chargePoint = null;
        this.path = null;
        this.subprotocol = null;
        this.messages = [];
        this.steps = [];
        this.validationErrors = [];
        this.errors = [];
        this.actionsById = new Map();
        this.cursor = 0;
        this.listeners = new Set();
        this.connections = [];
    }

    record(direction, raw) {
        const entry = { time: new Date().toISOString(), direction };
        try {
            const msg = JSON.parse(raw);
            const kind = { 2: 'Call', 3: 'CallResult', 4: 'CallError' }[msg[0]] || 'Invalid';
            const other = direction === 'sent' ? 'received' : 'sent';
            entry.message_type = kind;
            entry.id = msg[1];
            if (kind === 'Call') {
                entry.action = msg[2];
                entry.payload = msg[3];
                this.actionsById.set(`${direction}:${msg[1]}`, msg[2]);
            } else if (kind === 'CallResult') {
                entry.action = this.actionsById.get(`${other}:${msg[1]}`) ?? null;
                entry.payload = msg[2];
            } else if (kind === 'CallError') {
                entry.action = this.actionsById.get(`${other}:${msg[1]}`) ?? null;
                entry.payload = { errorCode: msg[2], errorDescription: msg[3], errorDetails: msg[4] };
                if (direction === 'sent') {
                    this.validationErrors.push({
                        direction: 'received', id: msg[1], action: entry.action, error: entry.payload,
                    });
                }
            } else {
                this.validationErrors.push({ direction, raw, error: 'unknown message type' });
            }
        } catch (e) {
            entry.message_type = 'Invalid';
            entry.error = String(e);
            this.validationErrors.push({ direction, raw, error: `not OCPP-J: ${e}` });
        }
        this.messages.push(entry);
        for (const wake of this.listeners) wake();
    }

    responseTo(id) {
        return this.messages.find((m) => m.direction === 'received' && m.id === id
            && (m.message_type === 'CallResult' || m.message_type === 'CallError'));
    }

    ok() {
        return this.chargePoint !== null && this.validationErrors.length === 0
            && this.errors.length === 0 && this.steps.every((s) => s.ok);
    }

    toJSON() {
        return {
            peer: 'ocpp-rpc',
            ok: this.ok(),
            charge_point: this.chargePoint,
            path: this.path,
            subprotocol: this.subprotocol,
            connections: this.connections,
            messages: this.messages,
            steps: this.steps,
            validation_errors: this.validationErrors,
            errors: this.errors,
            duration_s: (Date.now() - this.started) / 1000,
        };
    }
}

// Transaction ids run on across reconnections, like the sandbox's.
let nextTransactionId = 1;

function answers(args) {
    const now = () => new Date().toISOString();
    return {
        BootNotification: () => ({ status: 'Accepted', currentTime: now(), interval: args.interval }),
        Heartbeat: () => ({ currentTime: now() }),
        StatusNotification: () => ({}),
        Authorize: () => ({ idTagInfo: { status: 'Accepted' } }),
        StartTransaction: () => ({ transactionId: nextTransactionId++, idTagInfo: { status: 'Accepted' } }),
        StopTransaction: ({ params }) => (params.idTag === undefined ? {} : { idTagInfo: { status: 'Accepted' } }),
        MeterValues: () => ({}),
        DataTransfer: () => ({ status: 'UnknownVendorId' }),
        FirmwareStatusNotification: () => ({}),
        DiagnosticsStatusNotification: () => ({}),
    };
}

async function runCallStep(conn, report, step, args) {
    const client = await conn.current(args.callTimeout * 1000);
    if (!client) return { ok: false, error: `no charge point connected to send ${step.call} to` };
    const before = report.messages.length;
    const result = {};
    let error = null;
    try {
        await client.call(step.call, step.payload ?? {}, { callTimeoutMs: args.callTimeout * 1000 });
    } catch (e) {
        error = e;
    }
    const sent = report.messages.slice(before).find((m) => m.direction === 'sent'
        && m.message_type === 'Call' && m.action === step.call);
    if (!sent) {
        report.validationErrors.push({ direction: 'sent', action: step.call, error: String(error) });
        return { ok: false, error: `${step.call} was not sent: ${error}` };
    }
    result.id = sent.id;
    const answer = report.responseTo(sent.id);
    if (!answer) return { ...result, ok: false, error: `no answer to ${step.call}: ${error}` };
    result.response = answer.payload;
    if (answer.message_type === 'CallError') {
        const ok = step.expect_error !== undefined && answer.payload.errorCode === step.expect_error;
        return ok ? { ...result, ok } : { ...result, ok, error: `CALLERROR ${JSON.stringify(answer.payload)}` };
    }
    if (error) {
        // A CALLRESULT arrived but strict mode rejected it.
        report.validationErrors.push({ direction: 'received', id: sent.id, action: step.call, error: String(error) });
        return { ...result, ok: false, error: `response failed validation: ${error}` };
    }
    if (step.expect_error !== undefined) {
        return { ...result, ok: false, error: `expected CALLERROR ${step.expect_error}` };
    }
    const expect = step.expect ?? {};
    const ok = isSubset(expect, answer.payload);
    return ok ? { ...result, ok } : {
        ...result, ok, error: `response ${JSON.stringify(answer.payload)} does not contain ${JSON.stringify(expect)}`,
    };
}

function runWaitStep(report, step) {
    const match = step.match ?? {};
    const timeoutMs = Number(step.timeout ?? 10) * 1000;
    return new Promise((resolve) => {
        const check = () => {
            for (let i = report.cursor; i < report.messages.length; i++) {
                const m = report.messages[i];
                if (m.direction === 'received' && m.message_type === 'Call' && m.action === step.wait_for
                    && isSubset(match, m.payload)) {
                    report.cursor = i + 1;
                    finish({ ok: true, id: m.id, payload: m.payload });
                    return;
                }
            }
        };
        const timer = setTimeout(() => finish({
            ok: false, error: `no ${step.wait_for} matching ${JSON.stringify(match)}`,
        }), timeoutMs);
        const finish = (r) => {
            clearTimeout(timer);
            report.listeners.delete(check);
            resolve(r);
        };
        report.listeners.add(check);
        check();
    });
}

// The charge point's current connection (null between a disconnection and the next).
class CurrentConnection {
    constructor() {
        this.client = null;
        this.closing = false;
        this.waiters = new Set();
    }

    set(client) {
        this.client = client;
        for (const wake of this.waiters) wake(client);
        this.waiters.clear();
    }

    clear(client) {
        if (this.client === client) this.client = null;
    }

    // Resolves with the connected client, waiting up to `ms` for one; null if none came.
    current(ms) {
        if (this.client) return Promise.resolve(this.client);
        return new Promise((resolve) => {
            const timer = setTimeout(() => { this.waiters.delete(wake); resolve(null); }, ms);
            const wake = (c) => { clearTimeout(timer); resolve(c); };
            this.waiters.add(wake);
        });
    }
}

async function main() {
    let args;
    let steps;
    try {
        args = parseArgs(process.argv.slice(2));
        steps = loadScenario(args.scenario);
    } catch (e) {
        process.stderr.write(`ocpp_rpc_csms.js: ${e.message}\n`);
        return 2;
    }
    const report = new Report();
    const server = new RPCServer({
        protocols: ['ocpp1.6'],
        strictMode: true,
        callTimeoutMs: args.callTimeout * 1000,
    });
    const conn = new CurrentConnection();
    server.auth((accept, reject, handshake) => {
        if (conn.client) {
            reject(409, 'this CSMS accepts one charge point at a time');
            return;
        }
        report.path = handshake.request.url;
        accept({});
    });

    let booted;
    const bootSeen = new Promise((r) => { booted = r; });
    const scenario = (async () => {
        await bootSeen;
        for (const [index, step] of steps.entries()) {
            let r;
            if ('call' in step) {
                r = await runCallStep(conn, report, step, args);
            } else if ('wait_for' in step) {
                r = await runWaitStep(report, step);
            } else if ('act' in step) {
                // The test driving the charger performs the hardware action it reads here.
                process.stdout.write(`${JSON.stringify({ act: step.act, index })}\n`);
                r = { ok: true };
            } else {
                await new Promise((done) => { setTimeout(done, step.sleep * 1000); });
                r = { ok: true };
            }
            report.steps.push({ index, step, ...r });
        }
    })();
    const finished = scenario.catch((e) => { report.errors.push(`scenario failed: ${e}`); });

    server.on('client', (client) => {
        if (report.chargePoint !== null && client.identity !== report.chargePoint) {
            report.errors.push(`charge point ${JSON.stringify(client.identity)} connected after ${JSON.stringify(report.chargePoint)}`);
            client.close({ code: 1008, reason: 'another charge point' });
            return;
        }
        report.chargePoint = client.identity;
        report.subprotocol = client.protocol ?? null;
        const connection = { opened: new Date().toISOString(), path: report.path, subprotocol: report.subprotocol };
        report.connections.push(connection);
        if (client.protocol !== 'ocpp1.6') {
            report.errors.push(`subprotocol ${JSON.stringify(client.protocol)}, expected "ocpp1.6"`);
        }
        client.on('message', ({ message, outbound }) => {
            report.record(outbound ? 'sent' : 'received', message.toString());
        });
        client.on('strictValidationFailure', ({ error, method, outbound, isCall }) => {
            report.validationErrors.push({
                direction: outbound ? 'sent' : 'received',
                action: method,
                message: isCall ? 'Call' : 'CallResult',
                error: String(error),
            });
        });
        client.on('badMessage', ({ buffer, error }) => {
            report.validationErrors.push({ direction: 'received', raw: buffer.toString(), error: String(error) });
        });
        for (const [action, answer] of Object.entries(answers(args))) {
            client.handle(action, (call) => {
                if (action === 'BootNotification') booted();
                return answer(call);
            });
        }
        client.handle(({ method }) => {
            throw createRPCError('NotImplemented', `this CSMS does not handle ${method}`);
        });
        // A charge point may reconnect (after a reset, say); the scenario goes on with the next
        // connection and its steps fail if it does not come back in time.
        client.once('close', () => {
            connection.closed = new Date().toISOString();
            connection.closed_by = conn.closing ? 'csms' : 'charge point';
            conn.clear(client);
        });
        conn.set(client);
    });

    try {
        const http = await server.listen(args.port, args.host);
        process.stdout.write(`${JSON.stringify({ listening: http.address().port })}\n`);
    } catch (e) {
        report.errors.push(`cannot listen on ${args.host}:${args.port}: ${e.message}`);
    }
    if (report.errors.length === 0) {
        let timer;
        const timeout = new Promise((r) => { timer = setTimeout(() => r('timeout'), args.timeout * 1000); });
        if (await Promise.race([finished, timeout]) === 'timeout') {
            report.errors.push(`overall timeout of ${args.timeout}s reached`);
        }
        clearTimeout(timer);
        if (conn.client) {
            conn.closing = true;
            await settleWithin(conn.client.close({ code: 1000, reason: 'scenario finished' }), 2000);
        }
    }
    await settleWithin(server.close({ force: true }), 2000);
    if (report.chargePoint === null) report.errors.push('no charge point connected');
    if (report.steps.length < steps.length) {
        report.errors.push(`only ${report.steps.length} of ${steps.length} steps ran`);
    }
    fs.writeFileSync(args.report, JSON.stringify(report, null, 2));
    return report.ok() ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
    process.stderr.write(`ocpp_rpc_csms.js: ${e.stack || e}\n`);
    process.exit(1);
});
