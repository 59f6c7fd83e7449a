/**
 * A remembered API key stops at its `expires_at`, not up to 10 s later: the gateway checks the
 * expiry carried by its memory's entry at every use (src/auth/api-key-cache.ts).
 */
import { Client } from "pg";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(60_000);

let w: CompatWorld;

beforeAll(async () => {
	w = await startCompatWorld();
});
afterAll(() => w?.close());

test("a key remembered by the gateway answers 401 from its expiry on", async () => {
	const u = await w.user(1_000);
	const keyId = u.key.split("_")[1];
	const c = new Client({ connectionString: w.db.url });
	await c.connect();
	const { rows } = await c.query<{ at: Date }>(
		`UPDATE api_keys SET expires_at = now() + interval '3 seconds' WHERE id = $1 RETURNING expires_at AS at`,
		[keyId]
	);
	await c.end();
	const expiresAt = rows[0].at.getTime();
	const models = () =>
		fetch(`${w.node.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${u.key}` } }).then(async r => {
			await r.text();
			return r.status;
		});
	// The first lookup teaches the key's owner, the second is remembered, the third served from memory.
	expect([await models(), await models(), await models()]).toEqual([200, 200, 200]);
	const cache = (w.node.broker.getLocalService("api") as unknown as { apiKeys: { size: number } }).apiKeys;
	expect(cache.size).toBe(1);
	expect(Date.now()).toBeLessThan(expiresAt);
	await new Promise(r => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 100));
	// Well within the entry's 10 s: only the key's own expiry refuses it.
	expect(await models()).toBe(401);
});
