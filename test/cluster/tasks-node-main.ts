/**
 * One node of the tasks cluster test, in its own process. ROLE=core hosts the gateway with users,
 * projects, payments and tasks; ROLE=tasks a second tasks replica; ROLE=worker the fake ai worker
 * (its runs are recorded in Redis so the test can check that no task ran twice at once).
 */
import { loadConfig } from "../../src/config";
import { createNode } from "../../app/node";
import { runtimeOf } from "../../src/runtime/runtime";
import { fakeAiWorker } from "../support/fake-ai-worker";
import type { ServiceSchema } from "moleculer";

const role = process.env.ROLE ?? "worker";

async function main() {
	const config = loadConfig();
	let extra: ServiceSchema[] = [];
	let record: ((run: unknown) => void) | null = null;
	if (role === "worker") {
		extra = [
			fakeAiWorker({
				slots: Number(process.env.WORKER_SLOTS ?? 2),
				runMs: Number(process.env.WORKER_RUN_MS ?? 1000),
				heartbeatMs: 200,
				pollMs: 100,
				record: run => record?.(run)
			})
		];
	}
	const services =
		role === "core"
			? (["api", "users", "projects", "payments", "tasks"] as const)
			: role === "tasks"
				? (["tasks"] as const)
				: ([] as const);
	const node = await createNode(config, { services: [...services], extraServices: extra });
	const redis = runtimeOf(node.broker).redis!;
	record = run => void redis.rpush(`${config.redisPrefix}test:runs`, JSON.stringify(run));
	const api = node.broker.getLocalService("api") as unknown as { server?: import("node:http").Server } | undefined;
	const addr = api?.server?.address();
	console.log(`NODE_READY ${node.broker.nodeID} ${addr && typeof addr === "object" ? addr.port : 0}`);
	const stop = () =>
		node.stop().then(
			() => process.exit(0),
			() => process.exit(1)
		);
	process.on("SIGTERM", stop);
	process.on("SIGINT", stop);
}

main().catch(err => {
	console.error("node failed", err);
	process.exit(1);
});
