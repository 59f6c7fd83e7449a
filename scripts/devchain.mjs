#!/usr/bin/env node
// Local EVM dev chain: Hardhat 3's in-process network (EDR) served as HTTP JSON-RPC.
//
// Plain ESM JavaScript because hardhat 3 is ESM-only and Jest (CommonJS) cannot load it
// in-process; tests and scripts spawn this file instead (test/support/devchain.ts).
//
//   node scripts/devchain.mjs [--port 8545] [--host 127.0.0.1] [--exit-on-stdin-close]
//
// Prints exactly one line `DEVCHAIN_READY <url> <chainId>` on stdout once it accepts
// requests; everything else goes to stderr. The chain starts with Hardhat's 20 well-known
// funded accounts, unlocked, automining one block per transaction.
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createHardhatRuntimeEnvironment } from "hardhat/hre";

const MAX_BODY_BYTES = 20 * 1024 * 1024;

const { values: args } = parseArgs({
	options: {
		port: { type: "string", default: "8545" },
		host: { type: "string", default: "127.0.0.1" },
		// Lets a parent that dies without cleaning up (a crashed Jest worker) take the chain with it.
		"exit-on-stdin-close": { type: "boolean", default: false }
	}
});
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
	console.error(`devchain: invalid --port ${args.port}`);
	process.exit(2);
}

// Project root given explicitly so the chain starts from any cwd; `{}` = no hardhat.config.
const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const hre = await createHardhatRuntimeEnvironment({}, {}, projectRoot);
const connection = await hre.network.create();
const provider = connection.provider;

const rpcError = (id, code, message, data) => ({
	jsonrpc: "2.0",
	id: id ?? null,
	error: data === undefined ? { code, message } : { code, message, data }
});

/** Maps a provider exception to a JSON-RPC error object, keeping revert data for decoders. */
function toRpcError(id, err) {
	const code = Number.isInteger(err?.code) ? err.code : -32603;
	const message = typeof err?.message === "string" ? err.message : String(err);
	// EDR attaches the offending request as `data` on some errors; that is noise, not data.
	const data =
		err?.data !== undefined && !(typeof err.data === "object" && err.data !== null && "method" in err.data)
			? err.data
			: undefined;
	return rpcError(id, code, message, data);
}

/** Handles one JSON-RPC request object; returns undefined for notifications (no id). */
async function handleOne(request) {
	const isObject = typeof request === "object" && request !== null && !Array.isArray(request);
	const id = isObject ? request.id : null;
	if (!isObject || request.jsonrpc !== "2.0" || typeof request.method !== "string") {
		return rpcError(id, -32600, "Invalid Request");
	}
	if (request.params !== undefined && typeof request.params !== "object") {
		return rpcError(id, -32602, "Invalid params: must be an array or object");
	}
	let response;
	try {
		const result = await provider.request({ method: request.method, params: request.params ?? [] });
		response = { jsonrpc: "2.0", id: id ?? null, result: result ?? null };
	} catch (err) {
		response = toRpcError(id, err);
	}
	return "id" in request ? response : undefined;
}

async function handleBody(body) {
	let parsed;
	try {
		parsed = JSON.parse(body);
	} catch {
		return rpcError(null, -32700, "Parse error");
	}
	if (!Array.isArray(parsed)) return handleOne(parsed);
	if (parsed.length === 0) return rpcError(null, -32600, "Invalid Request: empty batch");
	// Sequential on purpose: a batch of dependent calls (send, then mine, then read) must see
	// its own effects in order, as on a real node's single-threaded dev chain.
	const responses = [];
	for (const request of parsed) {
		const response = await handleOne(request);
		if (response !== undefined) responses.push(response);
	}
	return responses.length ? responses : undefined;
}

function send(res, status, payload) {
	const body = payload === undefined ? "" : JSON.stringify(payload);
	res.writeHead(status, {
		"content-type": "application/json",
		"content-length": Buffer.byteLength(body),
		"access-control-allow-origin": "*"
	});
	res.end(body);
}

const server = createServer((req, res) => {
	if (req.method === "OPTIONS") {
		res.writeHead(204, {
			"access-control-allow-origin": "*",
			"access-control-allow-methods": "POST, OPTIONS",
			"access-control-allow-headers": "content-type"
		});
		res.end();
		return;
	}
	if (req.method !== "POST") {
		res.writeHead(405, { allow: "POST, OPTIONS" });
		res.end();
		return;
	}
	const chunks = [];
	let size = 0;
	req.on("data", chunk => {
		size += chunk.length;
		if (size > MAX_BODY_BYTES) {
			send(res, 413, rpcError(null, -32600, "Request body too large"));
			req.destroy();
			return;
		}
		chunks.push(chunk);
	});
	req.on("end", () => {
		if (res.headersSent) return;
		handleBody(Buffer.concat(chunks).toString("utf8")).then(
			payload => send(res, payload === undefined ? 204 : 200, payload),
			err => send(res, 500, rpcError(null, -32603, `Internal error: ${err?.message ?? err}`))
		);
	});
});

// Clients (ethers on Node's keep-alive agent) reuse idle sockets; a server that closes them after
// Node's default 5 s races a reused socket into "socket hang up". Keep idle sockets longer than any
// client keeps them.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

await new Promise((resolve, reject) => {
	server.once("error", reject);
	server.listen(port, args.host, resolve);
});

let stopping = false;
async function shutdown(signal) {
	if (stopping) return;
	stopping = true;
	console.error(`devchain: ${signal}, stopping`);
	server.close();
	server.closeAllConnections();
	try {
		await connection.close();
	} finally {
		process.exit(0);
	}
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
if (args["exit-on-stdin-close"]) {
	process.stdin.on("end", () => void shutdown("stdin closed"));
	process.stdin.on("error", () => void shutdown("stdin error"));
	process.stdin.resume();
}

const { port: boundPort } = server.address();
const host = args.host.includes(":") ? `[${args.host}]` : args.host;
const chainId = Number.parseInt(await provider.request({ method: "eth_chainId" }), 16);
console.log(`DEVCHAIN_READY http://${host}:${boundPort} ${chainId}`);
