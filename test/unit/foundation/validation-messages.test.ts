import { ServiceBroker, Validators } from "moleculer";
import { VALIDATOR_MESSAGES } from "../../../moleculer.config";

test("an enum refusal names the bad value and the allowed ones, each where it belongs", async () => {
	const broker = new ServiceBroker({
		logger: false,
		validator: new Validators.Fastest({ messages: VALIDATOR_MESSAGES })
	});
	broker.createService({
		name: "t",
		actions: { op: { params: { op: { type: "enum", values: ["add", "delete"] } }, handler: () => "ok" } }
	});
	await broker.start();
	try {
		const err: any = await broker.call("t.op", { op: "chmod" }).catch((e: unknown) => e);
		expect(err.data[0].message).toBe(
			"The 'op' field value 'chmod' does not match any of the allowed values (add, delete)."
		);
	} finally {
		await broker.stop();
	}
});
