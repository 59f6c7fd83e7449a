/** Which failures count towards opening a circuit (moleculer.config.ts `circuitBreaker.check`). */
import { Errors } from "moleculer";
import { brokerOptions, countsForCircuitBreaker } from "../../../moleculer.config";
import { loadConfig } from "../../../src/config";
import { BadRequest, Conflict, NotFound, Unavailable, Unprocessable } from "../../../src/errors";

describe("the circuit breaker counts only failures that say the callee is unwell", () => {
	test("it is the broker's check", () => {
		const cb = brokerOptions(loadConfig({})).circuitBreaker as { enabled: boolean; check: unknown };
		expect(cb.enabled).toBe(true);
		expect(cb.check).toBe(countsForCircuitBreaker);
	});

	test.each([
		["a validation error", new Errors.ValidationError("bad", "VALIDATION_ERROR", [])],
		["a 400", BadRequest("bad")],
		["a 404", NotFound("Project")],
		["a 409", Conflict("taken", "VERSION_CONFLICT")],
		["a 422", Unprocessable("bad", [{ field: "a", message: "bad" }])],
		["STRIPE_NOT_CONFIGURED", Unavailable("Card payments are not configured", "STRIPE_NOT_CONFIGURED")],
		["CHAIN_NOT_CONFIGURED", Unavailable("FORGE payments are not configured", "CHAIN_NOT_CONFIGURED")],
		["STRIPE_UNAVAILABLE", Unavailable("Stripe did not answer", "STRIPE_UNAVAILABLE")],
		["CHAIN_UNAVAILABLE", Unavailable("The RPC did not answer", "CHAIN_UNAVAILABLE")],
		// As it arrives from another node: a plain error object rebuilt by the transporter.
		["a remote business 503", Object.assign(new Error("x"), { code: 503, type: "STRIPE_NOT_CONFIGURED" })]
	])("does not count %s", (_what, err) => {
		expect(countsForCircuitBreaker(err)).toBe(false);
	});

	test.each([
		["an unexpected error", new TypeError("cannot read properties of undefined")],
		["a 500", new Errors.MoleculerServerError("boom", 500, "INTERNAL")],
		["a 503 the callee did not mean", Unavailable("Queue statistics are not available")],
		["a 503 with an unknown code", new Errors.MoleculerServerError("db down", 503, "DATABASE_UNAVAILABLE")],
		["a connection error", Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })],
		["a request timeout", new Errors.RequestTimeoutError({ action: "a.b", nodeID: "n1" })]
	])("counts %s", (_what, err) => {
		expect(countsForCircuitBreaker(err)).toBe(true);
	});
});
