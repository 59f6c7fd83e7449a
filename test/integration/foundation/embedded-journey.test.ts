/**
 * A newcomer on a fresh clone: the platform started with no environment at all (what `./forge start`
 * runs), register, create a project, submit a `dev-echo` task, and it completes, paid by the welcome
 * grant (on by default in embedded mode). No operator step, no REPL.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, "..", "..", "..");

function freePort(): Promise<number> {
	return new Promise(resolve => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

test("fresh embedded start → register → dev-echo task completes on the welcome grant", async () => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ff-journey-"));
	fs.chmodSync(dataDir, 0o755); // the embedded PostgreSQL runs as the postgres user when we are root
	const [port, pgPort] = [await freePort(), await freePort()];
	const env: Record<string, string> = {
		PATH: process.env.PATH ?? "",
		HOME: process.env.HOME ?? "/root",
		DATA_DIR: dataDir,
		PORT: String(port),
		EMBEDDED_PG_PORT: String(pgPort),
		LOG_LEVEL: "warn"
	};
	const proc = spawn(process.execPath, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
		cwd: ROOT,
		env,
		stdio: ["ignore", "pipe", "pipe"]
	});
	let out = "";
	proc.stdout.on("data", b => (out += b));
	proc.stderr.on("data", b => (out += b));
	const exited = new Promise<number | null>(r => proc.once("exit", code => r(code)));
	const base = `http://127.0.0.1:${port}/api/v1`;
	const call = async (method: string, p: string, body?: unknown, token?: string) => {
		const res = await fetch(base + p, {
			method,
			headers: {
				...(body === undefined ? {} : { "content-type": "application/json" }),
				...(token ? { authorization: `Bearer ${token}` } : {})
			},
			body: body === undefined ? undefined : JSON.stringify(body)
		});
		return { status: res.status, json: (await res.json().catch(() => undefined)) as any };
	};
	try {
		const end = Date.now() + 90_000;
		while (!out.includes("Press Ctrl-C")) {
			if (Date.now() > end || proc.exitCode != null) throw new Error(`did not start:\n${out}`);
			await new Promise(r => setTimeout(r, 200));
		}
		// The quick start: register (202, the same answer whether the address was free), then sign in.
		const reg = await call("POST", "/auth/register", {
			email: "newcomer@example.com",
			password: "correct horse battery staple"
		});
		expect(reg.status).toBe(202);
		const login = await call("POST", "/auth/login", {
			email: "newcomer@example.com",
			password: "correct horse battery staple"
		});
		expect(login.status).toBe(200);
		const token = login.json.accessToken as string;
		const balance = await call("GET", "/billing/balance", undefined, token);
		expect(balance.json.available).toBeGreaterThan(0);

		const project = await call("POST", "/projects", { name: "first" }, token);
		expect(project.status).toBe(201);
		const submitted = await call(
			"POST",
			"/tasks",
			{ projectId: project.json.id, kind: "chat", prompt: "Say hello", model: "dev-echo" },
			token
		);
		expect(submitted.status).toBe(202);
		const taskId = submitted.json.task.id as string;
		let state = "";
		const until = Date.now() + 60_000;
		while (!["succeeded", "failed", "cancelled"].includes(state) && Date.now() < until) {
			await new Promise(r => setTimeout(r, 250));
			state = (await call("GET", `/tasks/${taskId}`, undefined, token)).json.state;
		}
		expect(state).toBe("succeeded");
		const after = await call("GET", "/billing/balance", undefined, token);
		expect(after.json.held).toBe(0);
		expect(after.json.available).toBeLessThan(balance.json.available);
	} finally {
		proc.kill("SIGINT");
		await exited;
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
});
