/**
 * One process of the auth benchmark: a ForgeFluid node hosting SERVICES (here "users" or "api"),
 * configured from the environment like any cluster node; prints `BENCH_READY <port>` when started.
 */
import http from "node:http";
import { loadConfig } from "../../src/config";
import { createNode } from "../../app/node";

async function main() {
	const node = await createNode(loadConfig());
	const api = node.broker.getLocalService("api") as unknown as { server?: http.Server } | undefined;
	const addr = api?.server?.address();
	if (node.config.services.includes("api")) await node.broker.waitForServices(["users"], 30_000);
	console.log(`BENCH_READY ${addr && typeof addr === "object" ? addr.port : 0}`);
	process.on("SIGTERM", () => void node.stop().then(() => process.exit(0)));
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
