import { Errors } from "moleculer";
import { mapError } from "../../../src/http/errors";
import { Conflict, PaymentRequired, TooManyRequests, Unavailable } from "../../../src/errors";

describe("mapError: everything thrown becomes the contract's error shape", () => {
	test("validation errors name each field and drop the offending values", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ type: "stringMin", field: "password", message: "too short", actual: "hunter2" }
		]);
		const m = mapError(err);
		expect(m.status).toBe(422);
		expect(m.body).toEqual({
			error: {
				code: "VALIDATION_ERROR",
				message: "Some fields are invalid",
				details: [{ field: "password", message: "too short", type: "stringMin" }]
			}
		});
		expect(JSON.stringify(m.body)).not.toContain("hunter2");
	});

	test.each([
		[{ type: "entity.parse.failed", status: 400 }, 400, "MALFORMED_JSON"],
		[{ type: "entity.too.large", status: 413 }, 413, "PAYLOAD_TOO_LARGE"],
		[{ type: "charset.unsupported", status: 415 }, 415, "UNSUPPORTED_MEDIA_TYPE"]
	])("body-parser %p → %i", (e, status, code) => {
		const m = mapError(Object.assign(new Error("x"), e));
		expect(m.status).toBe(status);
		expect(m.body.error.code).toBe(code);
	});

	test("unavailable services, timeouts and overload are 503 with Retry-After", () => {
		for (const err of [
			new Errors.ServiceNotFoundError({ action: "a.b" }),
			new Errors.ServiceNotAvailableError({ action: "a.b" }),
			new Errors.RequestTimeoutError({ action: "a.b", nodeID: "n" }),
			new Errors.QueueIsFullError({ action: "a.b", nodeID: "n", size: 1, limit: 1 })
		]) {
			const m = mapError(err);
			expect(m.status).toBe(503);
			expect(m.headers["Retry-After"]).toBe("5");
		}
		expect(mapError(Unavailable("Stripe is not configured", "STRIPE_NOT_CONFIGURED")).body.error).toEqual({
			code: "STRIPE_NOT_CONFIGURED",
			message: "Stripe is not configured"
		});
	});

	test("client errors keep their stable code; rate limits carry Retry-After", () => {
		expect(mapError(Conflict("exists", "EMAIL_TAKEN")).body.error.code).toBe("EMAIL_TAKEN");
		expect(mapError(PaymentRequired("short")).status).toBe(402);
		const rl = mapError(TooManyRequests("slow down", 42));
		expect(rl.status).toBe(429);
		expect(rl.headers["Retry-After"]).toBe("42");
	});

	test("unknown errors are a generic 500 without internals", () => {
		const m = mapError(new TypeError("cannot read properties of undefined (secret)"));
		expect(m).toEqual({
			status: 500,
			body: { error: { code: "INTERNAL_ERROR", message: "Internal server error" } },
			headers: {},
			internal: true
		});
		expect(mapError(undefined).status).toBe(500);
	});
});
