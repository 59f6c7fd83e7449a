/**
 * A platform node against the Stripe fake for the billing suites: the fake (test/support/stripe-fake.ts),
 * a database of its own and a node whose environment points at the fake, with the billing suites'
 * common settings (no rate limits in the way; the inbox drained by the tests, not by its poll) and
 * `env` on top. `close` stops them all.
 */
import type { ForgeNode } from "../../app/node";
import type { ServiceName } from "../../src/config";
import { createTestDatabase, startTestNode, type TestDatabase } from "./env";
import { startStripeFake, type StripeFake } from "./stripe-fake";

export interface StripePlatform {
	fake: StripeFake;
	db: TestDatabase;
	node: ForgeNode & { baseUrl: string };
	close(): Promise<void>;
}

export async function startStripePlatform(
	services: ServiceName[],
	env: Record<string, string> = {}
): Promise<StripePlatform> {
	const fake = await startStripeFake();
	const db = await createTestDatabase();
	const node = await startTestNode({
		db,
		services,
		env: {
			...fake.env(),
			RATE_LIMIT_PER_MINUTE: "100000",
			RATE_LIMIT_ANON_PER_MINUTE: "100000",
			STRIPE_INBOX_POLL_MS: "60000",
			...env
		}
	});
	return {
		fake,
		db,
		node,
		async close() {
			await node.stop();
			await db.drop();
			await fake.stop();
		}
	};
}
