/**
 * The floor under bench/firsttoken's figures: a bare Node HTTP server that does one PostgreSQL commit
 * per request (inserts a row) and answers 202 with the row's id. No framework, no auth, no broker:
 * the least any implementation of `POST /tasks` needs on this machine. Prints its URL on stdout.
 * Env: DATABASE_URL, POOL (default 10, DB_POOL_MAX's default).
 */
import http from "node:http";
import pg from "pg";

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL ?? 10) });

async function main() {
	await pool.query(
		"CREATE TABLE IF NOT EXISTS floor_tasks (id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
	);
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			pool.query<{ id: string }>("INSERT INTO floor_tasks (body) VALUES ($1) RETURNING id", [
				Buffer.concat(chunks).toString() || "{}"
			]).then(
				r => {
					res.writeHead(202, { "content-type": "application/json" });
					res.end(JSON.stringify({ task: { id: r.rows[0].id } }));
				},
				(err: Error) => {
					res.writeHead(500);
					res.end(err.message);
				}
			);
		});
	});
	server.listen(0, "127.0.0.1", () => {
		const a = server.address() as { port: number };
		console.log(`http://127.0.0.1:${a.port}`);
	});
	process.once("SIGTERM", () => server.close(() => void pool.end().then(() => process.exit(0))));
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
