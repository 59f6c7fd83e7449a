/**
 * One process of the gateway benchmark.
 *   ROLE=bare     a bare moleculer-web gateway with one hello route calling a local action (the baseline)
 *   ROLE=bare-remote / bare-worker   the same bare gateway calling the action on another process over NATS
 *   ROLE=gateway  the project's gateway (auth + validation + rate limit) with a route to a remote action
 *   ROLE=worker   the node hosting that remote action, over NATS
 */
import http from "node:http";
import { ServiceBroker, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { loadConfig } from "../../src/config";
import { createNode } from "../../app/node";
import { createApiService } from "../../services/api.service";
import { Type } from "@sinclair/typebox";

const Greeter: ServiceSchema = {
	name: "greeter",
	actions: {
		hello: {
			params: { name: { type: "string", min: 1, max: 40 } },
			handler(ctx) {
				return { hello: (ctx.params as { name: string }).name };
			}
		}
	}
};

async function main() {
	const role = process.env.ROLE;
	if (role === "bare" || role === "bare-remote" || role === "bare-worker") {
		// Plain Moleculer: no project middlewares, metrics or limits. "bare-remote" + "bare-worker"
		// put the same hop over NATS between the gateway and the action as the project's setup.
		const remote = role !== "bare";
		const broker = new ServiceBroker({
			logger: false,
			nodeID: `bench-${role}`,
			namespace: process.env.NAMESPACE,
			transporter: remote ? { type: "NATS", options: { url: process.env.TRANSPORTER } } : null
		});
		if (role !== "bare-remote") broker.createService(Greeter);
		if (role === "bare-worker") {
			await broker.start();
			console.log("BENCH_READY 0");
			return;
		}
		broker.createService({
			name: "api",
			mixins: [ApiGateway as unknown as ServiceSchema],
			settings: {
				port: 0,
				ip: "127.0.0.1",
				routes: [
					{ path: "/", aliases: { "GET /hello": "greeter.hello" }, mappingPolicy: "restrict", logging: false }
				]
			}
		} as ServiceSchema);
		await broker.start();
		if (remote) await broker.waitForServices(["greeter"], 10_000);
		const server = (broker.getLocalService("api") as unknown as { server: http.Server }).server;
		console.log(`BENCH_READY ${(server.address() as { port: number }).port}`);
		return;
	}
	const config = loadConfig();
	const node = await createNode(config, {
		services: [],
		extraServices:
			role === "gateway"
				? [
						createApiService({
							routes: [
								{
									method: "GET",
									path: "/hello",
									action: "greeter.hello",
									response: Type.Object({ hello: Type.String({ maxLength: 64 }) }),
									auth: "required",
									summary: "Hello",
									tag: "bench"
								}
							]
						})
					]
				: [Greeter]
	});
	const api = node.broker.getLocalService("api") as unknown as { server?: http.Server } | undefined;
	const addr = api?.server?.address();
	console.log(`BENCH_READY ${addr && typeof addr === "object" ? addr.port : 0}`);
	process.on("SIGTERM", () => void node.stop().then(() => process.exit(0)));
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
