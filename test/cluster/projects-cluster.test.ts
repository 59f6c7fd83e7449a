/**
 * The projects service on its own node behind a gateway node, over the real NATS: raw file bytes,
 * their headers (ctx.meta) and error codes cross the transporter intact.
 */
import { randomBytes } from "node:crypto";
import { bearerFor, createTestDatabase, NATS_URL, startTestNode, TestDatabase, uniqueId } from "../support/env";
import type { ForgeNode } from "../../app/node";
import { binary, client, expectError, text } from "../integration/projects/http";

let db: TestDatabase;
let gateway: ForgeNode & { baseUrl: string };
let worker: ForgeNode & { baseUrl: string };

beforeAll(async () => {
	db = await createTestDatabase();
	// Both nodes share this process's event loop: moving the 3 MB file in chunks on a loaded machine can
	// starve heartbeats past the 3 s default, and the dead-node detector would rightly evict the
	// gateway. This test is about bytes crossing the transporter, not node death: a longer timeout.
	const shared = {
		TRANSPORTER: NATS_URL,
		NAMESPACE: uniqueId("ffprojects"),
		RATE_LIMIT_PER_MINUTE: "100000",
		HEARTBEAT_INTERVAL_S: "2",
		HEARTBEAT_TIMEOUT_S: "15"
	};
	worker = await startTestNode({ db, services: ["projects"], env: { ...shared, NODE_ID: uniqueId("projects") } });
	gateway = await startTestNode({ db, services: ["api"], env: { ...shared, NODE_ID: uniqueId("gateway") } });
	await gateway.broker.waitForServices(["projects"], 15_000);
}, 60_000);
afterAll(async () => {
	await gateway?.stop();
	await worker?.stop();
	await db?.drop();
}, 30_000);

test("commit, read raw bytes with their headers, diff and conflicts through a remote projects node", async () => {
	const { call } = client(gateway.baseUrl);
	const t = bearerFor(gateway.config, "cluster-user");
	const p = await call("POST", "/api/v1/projects", { token: t, body: { name: "remote" } });
	expect(p.status).toBe(201);
	expect(p.headers.get("location")).toBe(`/api/v1/projects/${p.json.id}`);
	const data = randomBytes(300_000);
	const c = await call("POST", `/api/v1/projects/${p.json.id}/versions`, {
		token: t,
		body: { baseVersion: 0, message: "m", changes: [binary("bin/data.bin", data), text("page.html", "<b>x</b>")] }
	});
	expect(c.status).toBe(201);
	const f = await call("GET", `/api/v1/projects/${p.json.id}/files/bin/data.bin?version=1`, { token: t });
	expect(f.status).toBe(200);
	expect(f.headers.get("content-type")).toBe("application/octet-stream");
	expect(f.headers.get("x-content-type-options")).toBe("nosniff");
	expect(Buffer.compare(f.bytes, data)).toBe(0);
	const html = await call("GET", `/api/v1/projects/${p.json.id}/files/page.html`, { token: t });
	expect(html.headers.get("content-disposition")).toMatch(/^attachment;/);
	const stale = await call("POST", `/api/v1/projects/${p.json.id}/versions`, {
		token: t,
		body: { baseVersion: 0, message: "m", changes: [text("x", "y")] }
	});
	expectError(stale, 409, "VERSION_CONFLICT");
	expect(stale.json.error.details.headVersion).toBe(1);
	expectError(
		await call("GET", `/api/v1/projects/${p.json.id}`, { token: bearerFor(gateway.config, "someone-else") }),
		404,
		"NOT_FOUND"
	);

	// A file larger than one NATS message (max_payload, 1 MB by default) comes back in chunks. It is
	// committed on the worker itself: a commit request that large needs a larger max_payload.
	const big = randomBytes(3 * 1024 * 1024);
	await worker.broker.call("projects.commitAsUser", {
		projectId: p.json.id,
		userId: "cluster-user",
		taskId: "t-big",
		baseVersion: 1,
		message: "big",
		changes: [binary("big.bin", big), text("empty.txt", "")]
	});
	const back = await call("GET", `/api/v1/projects/${p.json.id}/files/big.bin`, { token: t });
	expect({ status: back.status, length: back.headers.get("content-length") }).toEqual({
		status: 200,
		length: String(big.length)
	});
	expect(Buffer.compare(back.bytes, big)).toBe(0);
	const empty = await call("GET", `/api/v1/projects/${p.json.id}/files/empty.txt`, { token: t });
	expect({ status: empty.status, length: empty.bytes.length, header: empty.headers.get("content-length") }).toEqual({
		status: 200,
		length: 0,
		header: "0"
	});
}, 30_000);
