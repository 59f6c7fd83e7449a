/**
 * One node of the fault-injection suite (test/cluster/faults.test.ts), in its own process.
 * ROLE=core: gateway, users, projects, payments, tasks. ROLE=gateway: a second gateway only.
 * ROLE=worker: the fake ai worker, with the real outcome spool (OUTCOME_SPOOL_DIR); every run is
 * appended to RUNS_FILE (a file, not Redis or PostgreSQL: both are cut during the suite) so the test
 * can count how often each task ran.
 */
import fs from "node:fs";
import type { ServiceSchema } from "moleculer";
import { loadConfig } from "../../src/config";
import { createNode } from "../../app/node";
import { OutcomeSpool } from "../../src/ai/outcome-spool";
import { fakeAiWorker } from "../support/fake-ai-worker";

const role = process.env.ROLE ?? "worker";

async function main() {
	const config = loadConfig();
	const runsFile = process.env.RUNS_FILE;
	const extra: ServiceSchema[] =
		role === "worker"
			? [
					fakeAiWorker({
						slots: Number(process.env.WORKER_SLOTS ?? 2),
						// A prompt with "slow" runs 30 s (a task that keeps its event streams open).
						runMs: task =>
							task.prompt.includes("slow") ? 30_000 : Number(process.env.WORKER_RUN_MS ?? 1000),
						heartbeatMs: 300,
						pollMs: 100,
						// The real worker's outcome spool (OUTCOME_SPOOL_DIR, one directory per worker here).
						spool: new OutcomeSpool(config.ai.outcomeSpoolDir, config.namespace),
						record: run => {
							if (runsFile) fs.appendFileSync(runsFile, JSON.stringify(run) + "\n");
						}
					})
				]
			: [];
	const services =
		role === "core"
			? (["api", "users", "projects", "payments", "tasks"] as const)
			: role === "gateway"
				? (["api"] as const)
				: ([] as const);
	const node = await createNode(config, { services: [...services], extraServices: extra });
	const api = node.broker.getLocalService("api") as unknown as { server?: import("node:http").Server } | undefined;
	const addr = api?.server?.address();
	console.log(`NODE_READY ${node.broker.nodeID} ${addr && typeof addr === "object" ? addr.port : 0}`);
	const stop = () => {
		const t = Date.now();
		node.stop().then(
			() => {
				console.log(`NODE_STOPPED ${Date.now() - t}`);
				process.exit(0);
			},
			() => process.exit(1)
		);
	};
	process.on("SIGTERM", stop);
	process.on("SIGINT", stop);
}

main().catch(err => {
	console.error("node failed", err);
	process.exit(1);
});
