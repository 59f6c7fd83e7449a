/**
 * The one authorization path (src/middlewares/permissions.ts): roles, a signed-in caller, API-key
 * scopes and sessionOnly, all read from action metadata, on a broker of its own (no transporter).
 */
import { ServiceBroker, type ServiceSchema } from "moleculer";
import type { AuthUser } from "../../../src/auth/user";
import { PermissionsMiddleware } from "../../../src/middlewares/permissions";

const ok = { handler: () => "ok" };
const guarded: ServiceSchema = {
	name: "guarded",
	actions: {
		open: ok,
		signedIn: { ...ok, auth: "required" },
		admins: { ...ok, permissions: ["admin", "operator"] },
		readUsers: { ...ok, auth: "required", scope: "users:read" },
		adminScope: { ...ok, permissions: ["admin"], scope: "admin" },
		sessionOnly: { ...ok, auth: "required", sessionOnly: true },
		optionalSessionOnly: { ...ok, sessionOnly: true },
		orgOpen: { ...ok, auth: "required", scope: "projects:read", orgKey: true }
	} as ServiceSchema["actions"]
};

const session = (role: AuthUser["role"] = "user"): AuthUser => ({ id: "u1", role, sid: "s1", scopes: ["*"] });
const apiKey = (scopes: string[], role: AuthUser["role"] = "user"): AuthUser => ({
	id: "u1",
	role,
	keyId: "k1",
	scopes
});

describe("PermissionsMiddleware", () => {
	const broker = new ServiceBroker({ logger: false, middlewares: [PermissionsMiddleware] });
	beforeAll(async () => {
		broker.createService(guarded);
		await broker.start();
	});
	afterAll(() => broker.stop());

	const call = (action: string, user: AuthUser | null) => broker.call(`guarded.${action}`, {}, { meta: { user } });
	const refusal = async (action: string, user: AuthUser | null) => {
		const err = await call(action, user).then(
			() => null,
			(e: { code: number; type: string }) => e
		);
		return err && { code: err.code, type: err.type };
	};

	test("an action without metadata is open to anyone", async () => {
		await expect(call("open", null)).resolves.toBe("ok");
		await expect(call("open", apiKey([]))).resolves.toBe("ok");
	});

	test("auth: required refuses an anonymous caller with 401", async () => {
		expect(await refusal("signedIn", null)).toEqual({ code: 401, type: "UNAUTHORIZED" });
		await expect(call("signedIn", session())).resolves.toBe("ok");
	});

	test("permissions admit only the listed roles (and need a caller)", async () => {
		expect(await refusal("admins", null)).toEqual({ code: 401, type: "UNAUTHORIZED" });
		expect(await refusal("admins", session("user"))).toEqual({ code: 403, type: "FORBIDDEN" });
		await expect(call("admins", session("operator"))).resolves.toBe("ok");
		await expect(call("admins", session("admin"))).resolves.toBe("ok");
	});

	test("scope narrows API keys only; a session holds every scope of its role", async () => {
		await expect(call("readUsers", session())).resolves.toBe("ok");
		await expect(call("readUsers", apiKey(["users:read"]))).resolves.toBe("ok");
		expect(await refusal("readUsers", apiKey(["projects:read"]))).toEqual({
			code: 403,
			type: "INSUFFICIENT_SCOPE"
		});
		await expect(call("adminScope", apiKey(["admin"], "admin"))).resolves.toBe("ok");
		expect(await refusal("adminScope", apiKey(["users:read"], "admin"))).toEqual({
			code: 403,
			type: "INSUFFICIENT_SCOPE"
		});
		// The role is checked before the scope: a user's key never reaches an admin action.
		expect(await refusal("adminScope", apiKey(["admin"], "user"))).toEqual({ code: 403, type: "FORBIDDEN" });
	});

	test("sessionOnly refuses API keys whatever their scopes, and leaves anonymous callers to the action", async () => {
		await expect(call("sessionOnly", session())).resolves.toBe("ok");
		expect(await refusal("sessionOnly", apiKey(["users:read", "users:write"]))).toEqual({
			code: 403,
			type: "SESSION_REQUIRED"
		});
		expect(await refusal("sessionOnly", null)).toEqual({ code: 401, type: "UNAUTHORIZED" });
		await expect(call("optionalSessionOnly", null)).resolves.toBe("ok");
		expect(await refusal("optionalSessionOnly", apiKey(["users:read"]))).toEqual({
			code: 403,
			type: "SESSION_REQUIRED"
		});
	});

	test("an organisation API key is refused wherever the action does not declare orgKey (403 ORG_KEY_NOT_ALLOWED)", async () => {
		const orgKey: AuthUser = { ...apiKey(["projects:read", "users:read"]), orgId: "o1" };
		expect(await refusal("readUsers", orgKey)).toEqual({ code: 403, type: "ORG_KEY_NOT_ALLOWED" });
		expect(await refusal("signedIn", orgKey)).toEqual({ code: 403, type: "ORG_KEY_NOT_ALLOWED" });
		await expect(call("orgOpen", orgKey)).resolves.toBe("ok");
		expect(await refusal("orgOpen", { ...orgKey, scopes: ["tasks:read"] })).toEqual({
			code: 403,
			type: "INSUFFICIENT_SCOPE"
		});
		await expect(call("open", orgKey)).resolves.toBe("ok");
		await expect(call("orgOpen", session())).resolves.toBe("ok");
	});
});
