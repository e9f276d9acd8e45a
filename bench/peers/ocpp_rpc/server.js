'use strict';
/**
 * Peer `ocpp-rpc`: Node's ocpp-rpc RPCServer in strict mode, as its README sets one up.
 *
 * strictMode: true validates every inbound CALL against the subprotocol's request schema and
 * every answer against the response schema (ajv, compiled once per process), answering a
 * CALLERROR when either fails. Options that differ from ocpp-rpc's defaults, to compare like for
 * like with the other peers: pingIntervalMs 0 (no server pings; default 30 s) and
 * perMessageDeflate false (already ws's default, set explicitly). Everything else is ocpp-rpc's
 * and ws's defaults (maxPayload 100 MiB, backlog 511, Nagle off).
 *
 * Arguments: --host H --port P [--cert F --key F [--client-ca F]] (port 0: any free port).
 * Plain ws uses RPCServer.listen(); wss is an https server feeding RPCServer.handleUpgrade, with
 * a client certificate required and verified against --client-ca when given (mutual TLS).
 * Prints one JSON line {"event":"listening","peer":"ocpp-rpc","port":N,"pid":PID} once
 * listening, nothing per message, and exits 0 on SIGTERM within 2 s.
 *
 * Path /ocpp/{identity} (404 otherwise); subprotocol ocpp1.6 or ocpp2.0.1, server's order when
 * both are offered, 400 when neither is (ocpp-rpc alone would accept without a subprotocol).
 * No authentication: the gateway checks Basic auth or certificates on top of this.
 *
 * Node raises its own RLIMIT_NOFILE soft limit to the hard limit at start (src/node.cc), so it
 * needs nothing from the parent beyond the hard limit it inherits.
 */

const fs = require('node:fs');
const https = require('node:https');
const { parseArgs } = require('node:util');
const { RPCServer } = require('ocpp-rpc');

const PEER = 'ocpp-rpc';
const SUBPROTOCOLS = ['ocpp1.6', 'ocpp2.0.1'];
const PATH_PREFIX = '/ocpp';
const HEARTBEAT_INTERVAL = 300;
const CLOSE_MS = 1500;

let nextTransactionId = 1;
const now = () => new Date().toISOString();

const HANDLERS = {
    'ocpp1.6': {
        BootNotification: () => ({ status: 'Accepted', currentTime: now(), interval: HEARTBEAT_INTERVAL }),
        Heartbeat: () => ({ currentTime: now() }),
        StatusNotification: () => ({}),
        MeterValues: () => ({}),
        Authorize: () => ({ idTagInfo: { status: 'Accepted' } }),
        StartTransaction: () => ({ transactionId: nextTransactionId++, idTagInfo: { status: 'Accepted' } }),
        StopTransaction: () => ({}),
    },
    'ocpp2.0.1': {
        BootNotification: () => ({ status: 'Accepted', currentTime: now(), interval: HEARTBEAT_INTERVAL }),
        Heartbeat: () => ({ currentTime: now() }),
        StatusNotification: () => ({}),
        MeterValues: () => ({}),
        TransactionEvent: () => ({}),
        Authorize: () => ({ idTokenInfo: { status: 'Accepted' } }),
    },
};

function options() {
    const { values } = parseArgs({
        options: {
            host: { type: 'string', default: '127.0.0.1' },
            port: { type: 'string', default: '0' },
            cert: { type: 'string' },
            key: { type: 'string' },
            'client-ca': { type: 'string' },
        },
    });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new Error(`--port: expected 0-65535, got ${values.port}`);
    }
    if (Boolean(values.cert) !== Boolean(values.key)) {
        throw new Error('--cert and --key go together');
    }
    if (values['client-ca'] && !values.cert) {
        throw new Error('--client-ca needs --cert and --key (mutual TLS is TLS)');
    }
    return { host: values.host, port, cert: values.cert, key: values.key, clientCa: values['client-ca'] };
}

function createRpcServer() {
    const server = new RPCServer({
        protocols: SUBPROTOCOLS,
        strictMode: true,
        pingIntervalMs: 0,
        wssOptions: { perMessageDeflate: false },
    });
    server.auth((accept, reject, handshake) => {
        if (handshake.endpoint !== PATH_PREFIX || !handshake.identity) {
            reject(404, 'expected /ocpp/{identity}');
        } else if (!SUBPROTOCOLS.some((p) => handshake.protocols.has(p))) {
            reject(400, 'expected subprotocol ocpp1.6 or ocpp2.0.1');
        } else {
            accept();
        }
    });
    server.on('client', (client) => {
        for (const [method, handler] of Object.entries(HANDLERS[client.protocol])) {
            client.handle(method, handler);
        }
    });
    server.on('error', (err) => console.error(`${PEER}: server error: ${err.message}`));
    return server;
}

async function listenTls(server, opts) {
    const tlsServer = https.createServer(
        {
            cert: fs.readFileSync(opts.cert),
            key: fs.readFileSync(opts.key),
            ca: opts.clientCa ? fs.readFileSync(opts.clientCa) : undefined,
            requestCert: Boolean(opts.clientCa),
            rejectUnauthorized: Boolean(opts.clientCa),
            noDelay: true, // as RPCServer.listen() does for plain ws
        },
        (req, res) => {
            res.statusCode = 404;
            res.end();
        },
    );
    tlsServer.on('upgrade', server.handleUpgrade);
    await new Promise((resolve, reject) => {
        tlsServer.once('error', reject);
        tlsServer.listen({ port: opts.port, host: opts.host }, resolve);
    });
    return tlsServer;
}

async function main() {
    const opts = options();
    const server = createRpcServer();
    const listener = opts.cert ? await listenTls(server, opts) : await server.listen(opts.port, opts.host);

    const stop = async () => {
        setTimeout(() => process.exit(0), CLOSE_MS).unref();
        listener.close();
        await server.close({ code: 1001 });
        process.exit(0);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);

    const line = { event: 'listening', peer: PEER, port: listener.address().port, pid: process.pid };
    process.stdout.write(JSON.stringify(line) + '\n');
}

main().catch((err) => {
    console.error(`${PEER}: ${err.message}`);
    process.exit(2);
});
