import { Errors } from "moleculer";
import zlib from "node:zlib";
import { MAX_ERROR_DETAILS, bodyParserError, mapError } from "../../../src/http/errors";
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

describe("error bodies stay small whatever the request held", () => {
	const many = (n: number) =>
		Array.from({ length: n }, (_, i) => ({ type: "enumValue", field: `scopes[${i}]`, message: "not a scope" }));

	test("validation details are capped at MAX_ERROR_DETAILS with the total", () => {
		const m = mapError(
			new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", many(100_000))
		);
		expect(m.status).toBe(422);
		const err = m.body.error as { details: Array<{ field: string }>; detailsTotal: number };
		expect(err.details).toHaveLength(MAX_ERROR_DETAILS);
		expect(err.details[0].field).toBe("scopes[0]");
		expect(err.detailsTotal).toBe(100_000);
		expect(JSON.stringify(m.body).length).toBeLessThan(4096);
	});

	test("up to the cap, all details and no total", () => {
		const m = mapError(new Errors.ValidationError("x", "VALIDATION_ERROR", many(MAX_ERROR_DETAILS)));
		expect((m.body.error.details as unknown[]).length).toBe(MAX_ERROR_DETAILS);
		expect(m.body.error.detailsTotal).toBeUndefined();
	});

	test("a domain 4xx with an array of details is capped the same way; long messages are cut", () => {
		const m = mapError(new Errors.MoleculerClientError("y".repeat(100_000), 422, "CHANGESET_INVALID", many(5000)));
		expect(m.body.error.code).toBe("CHANGESET_INVALID");
		expect((m.body.error.details as unknown[]).length).toBe(MAX_ERROR_DETAILS);
		expect(m.body.error.detailsTotal).toBe(5000);
		expect(m.body.error.message.length).toBeLessThanOrEqual(501);
	});
});

describe("bodyParserError: what the body parser passes on is the client's mistake", () => {
	test("a Content-Encoding that does not decode (zlib's own error) → 400 MALFORMED_BODY", async () => {
		const zlibErr = await new Promise<Error>(resolve => {
			const g = zlib.createGunzip();
			g.on("error", resolve);
			g.end(Buffer.from('{"not":"gzip"}'));
		});
		// body-parser hands it on as http-errors does: status 400, zlib's string code, no type.
		const passed = Object.assign(zlibErr, { status: 400, statusCode: 400 });
		const m = mapError(bodyParserError(passed));
		expect(m).toMatchObject({ status: 400, internal: false });
		expect(m.body.error.code).toBe("MALFORMED_BODY");
		// Unmapped, it was a 500 (a string code is no status).
		expect(mapError({ name: "MoleculerError", message: zlibErr.message, code: "Z_DATA_ERROR" }).status).toBe(500);
	});

	test("errors body-parser already typed pass unchanged", () => {
		const tooLarge = Object.assign(new Error("too large"), { type: "entity.too.large", status: 413 });
		expect(bodyParserError(tooLarge)).toBe(tooLarge);
	});
});
