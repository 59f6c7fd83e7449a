/**
 * The schema-driven fuzz test (issue 13) against one embedded node hosting every service: every
 * operation of /api/openapi.json, mutated by type, size, Unicode and encoding, with and without
 * credentials. No answer may be a 5xx (documented *_NOT_CONFIGURED 503s aside: this node has no
 * chain) or over 64 KB, and every error has the contract's shape. FUZZ_SEED picks another run.
 */
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { startStripeFake, type StripeFake } from "../../support/stripe-fake";
import { runFuzz, type FuzzReport } from "../../support/fuzz";
import { fuzzCredentials } from "../../support/fuzz-setup";

jest.setTimeout(600_000);

const SEED = Number(process.env.FUZZ_SEED ?? 1337);

let db: TestDatabase;
let fake: StripeFake;
let node: Awaited<ReturnType<typeof startTestNode>>;

beforeAll(async () => {
	fake = await startStripeFake();
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "projects", "payments", "tasks", "ai", "orgs"],
		env: {
			...fake.env(),
			STRIPE_MAX_NETWORK_RETRIES: "0",
			RATE_LIMIT_PER_MINUTE: "1000000",
			RATE_LIMIT_ANON_PER_MINUTE: "1000000",
			REGISTER_PER_IP_PER_HOUR: "100000",
			// The fuzzer logs out and revokes sessions too; its tokens must keep working for the cases after.
			AUTH_SESSION_CHECK: "false"
		}
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await fake?.stop();
});

test(`every operation, mutated (seed ${SEED}): no 5xx, no answer over 64 KB, errors in the contract's shape`, async () => {
	const creds = await fuzzCredentials(node.baseUrl, async id => {
		await node.runtime.sequelize.query(`UPDATE users SET role = 'admin' WHERE id = $1`, { bind: [id] });
	});
	const report: FuzzReport = await runFuzz({ baseUrl: node.baseUrl, creds, seed: SEED });
	// What ran, for the log of a CI run.
	console.log(
		JSON.stringify({
			seed: SEED,
			requests: report.requests,
			operations: report.operations,
			byStatus: report.byStatus,
			notConfigured: report.notConfigured
		})
	);
	expect(report.operations).toBeGreaterThan(50);
	expect(report.requests).toBeGreaterThan(600);
	expect(report.violations).toEqual([]);
});
