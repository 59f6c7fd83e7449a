import { Errors, ServiceBroker } from "moleculer";
import { DomainError, NotFound, Unavailable } from "../../../src/errors";
import { DomainErrorMiddleware } from "../../../src/middlewares/domain-errors";
import { mapError } from "../../../src/http/errors";

describe("DomainError → Moleculer, once, in the middleware", () => {
	const broker = new ServiceBroker({ logger: false, middlewares: [DomainErrorMiddleware] });
	broker.createService({
		name: "t",
		actions: {
			missing: async () => {
				throw NotFound("Widget", { field: "id" });
			},
			down: async () => {
				throw Unavailable("Widgets are resting");
			},
			sync: () => {
				throw new DomainError("WIDGET_BENT", 409, "The widget is bent");
			},
			other: async () => {
				throw new TypeError("boom");
			}
		}
	});
	beforeAll(() => broker.start());
	afterAll(() => broker.stop());

	test("a 4xx arrives as a client error with its status, code, message and details", async () => {
		const err = await broker.call("t.missing").catch(e => e);
		expect(err).toBeInstanceOf(Errors.MoleculerClientError);
		expect(err).toMatchObject({ code: 404, type: "NOT_FOUND", message: "Widget not found", data: { field: "id" } });
	});

	test("a 5xx arrives as a retryable server error", async () => {
		const err = await broker.call("t.down").catch(e => e);
		expect(err).toBeInstanceOf(Errors.MoleculerServerError);
		expect(err).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", retryable: true });
	});

	test("a synchronous throw is mapped too", async () => {
		const err = await broker.call("t.sync").catch(e => e);
		expect(err).toMatchObject({ code: 409, type: "WIDGET_BENT" });
	});

	test("anything else passes through untouched", async () => {
		const err = await broker.call("t.other").catch(e => e);
		expect(err).toBeInstanceOf(TypeError);
	});

	test("the gateway maps a DomainError thrown outside any action to the contract's shape", () => {
		expect(mapError(new DomainError("WIDGET_BENT", 409, "The widget is bent", { field: "w" }))).toMatchObject({
			status: 409,
			body: { error: { code: "WIDGET_BENT", message: "The widget is bent", details: { field: "w" } } },
			internal: false
		});
	});
});
