/**
 * An action may need several scopes (`scope: ["tasks:write", "ai:use"]`, src/middlewares/permissions.ts):
 * an API key must hold each of them, a session holds them all, and a call without a user (the
 * platform's own) is not narrowed unless the action needs a user.
 */
import { ServiceBroker, type ServiceSchema } from "moleculer";
import type { AuthUser } from "../../../src/auth/user";
import { PermissionsMiddleware } from "../../../src/middlewares/permissions";

const spend: ServiceSchema = {
	name: "spend",
	actions: {
		submit: { auth: "required", scope: ["tasks:write", "ai:use"], handler: () => "ok" },
		reserve: { scope: "ai:use", handler: () => "ok" }
	} as ServiceSchema["actions"]
};

const key = (scopes: string[]): AuthUser => ({ id: "u1", role: "user", keyId: "k1", scopes });

describe("a list of scopes", () => {
	const broker = new ServiceBroker({ logger: false, middlewares: [PermissionsMiddleware] });
	beforeAll(async () => {
		broker.createService(spend);
		await broker.start();
	});
	afterAll(() => broker.stop());

	const call = (action: string, user: AuthUser | null) => broker.call(`spend.${action}`, {}, { meta: { user } });

	test("a key needs each scope; the 403 names the one missing", async () => {
		await expect(call("submit", key(["tasks:write"]))).rejects.toMatchObject({
			code: 403,
			type: "INSUFFICIENT_SCOPE",
			message: "This needs the 'ai:use' scope"
		});
		await expect(call("submit", key(["ai:use"]))).rejects.toMatchObject({
			message: "This needs the 'tasks:write' scope"
		});
		await expect(call("submit", key(["tasks:write", "ai:use"]))).resolves.toBe("ok");
	});

	test("a session holds every scope of its role; no user is 401 where one is required", async () => {
		await expect(call("submit", { id: "u1", role: "user", sid: "s1", scopes: ["*"] })).resolves.toBe("ok");
		await expect(call("submit", null)).rejects.toMatchObject({ code: 401 });
	});

	test("a call without a user is not narrowed by a scope alone; a key on it is", async () => {
		await expect(call("reserve", null)).resolves.toBe("ok");
		await expect(call("reserve", key(["tasks:write"]))).rejects.toMatchObject({ type: "INSUFFICIENT_SCOPE" });
	});
});
