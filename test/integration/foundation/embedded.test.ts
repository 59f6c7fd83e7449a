/**
 * `npm start` with no environment: one process, every service, an embedded PostgreSQL under DATA_DIR,
 * migrations applied; health is ready, the docs are served, and SIGINT shuts it down cleanly.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

jest.setTimeout(90_000);

const ROOT = path.resolve(__dirname, "..", "..", "..");

function freePort(): Promise<number> {
	return new Promise(resolve => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

test("embedded defaults: starts, is ready, serves docs, stops on SIGINT, and keeps its data", async () => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ff-embedded-"));
	fs.chmodSync(dataDir, 0o755); // the embedded PostgreSQL runs as the postgres user when we are root
	const [port, pgPort] = [await freePort(), await freePort()];
	// Only what a developer's shell has: no cluster variables at all.
	const env: Record<string, string> = {
		PATH: process.env.PATH ?? "",
		HOME: process.env.HOME ?? "/root",
		DATA_DIR: dataDir,
		PORT: String(port),
		EMBEDDED_PG_PORT: String(pgPort),
		LOG_LEVEL: "warn"
	};

	async function runOnce() {
		const proc = spawn(process.execPath, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
			cwd: ROOT,
			env,
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		proc.stdout.on("data", b => (out += b));
		proc.stderr.on("data", b => (out += b));
		const exited = new Promise<number | null>(r => proc.once("exit", code => r(code)));
		const end = Date.now() + 60_000;
		while (!out.includes("Press Ctrl-C")) {
			if (Date.now() > end || proc.exitCode != null) throw new Error(`did not start:\n${out}`);
			await new Promise(r => setTimeout(r, 200));
		}
		expect(out).toContain(`http://localhost:${port}/api/docs`);
		expect(out).toContain(`http://localhost:${port}/metrics`);
		const ready = await fetch(`http://127.0.0.1:${port}/health/ready`);
		const report = (await ready.json()) as { ready: boolean; dependencies: Array<{ name: string; ok: boolean }> };
		expect(ready.status).toBe(200);
		expect(report.dependencies).toEqual(
			expect.arrayContaining([expect.objectContaining({ name: "postgres", ok: true })])
		);
		const docs = await fetch(`http://127.0.0.1:${port}/api/docs`);
		expect(docs.status).toBe(200);
		expect(await docs.text()).toContain("swagger-ui-bundle.js");
		proc.kill("SIGINT");
		expect(await exited).toBe(0);
		return out;
	}

	try {
		await runOnce();
		expect(fs.existsSync(path.join(dataDir, "pg", "PG_VERSION"))).toBe(true);
		// A second start reuses the data directory (no re-initialisation) and comes up again.
		await runOnce();
	} finally {
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
});
