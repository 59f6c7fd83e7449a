/**
 * A platform node on the dev chain for integration tests: the chain (test/support/devchain.ts), the
 * FORGE contracts deployed on it, a provider, a database of its own and a node whose environment
 * points at the deployment (`env` on top). `close` stops them all.
 */
import type { ethers } from "ethers";
import type { ForgeNode } from "../../app/node";
import { createChainProvider, deployForgeContracts, forgeChainEnv, type ForgeDeployment } from "../../src/chain/deploy";
import type { ServiceName } from "../../src/config";
import { startDevChain, type DevChain } from "./devchain";
import { createTestDatabase, startTestNode, type TestDatabase } from "./env";

export interface ChainPlatform {
	chain: DevChain;
	deployment: ForgeDeployment;
	provider: ethers.JsonRpcProvider;
	db: TestDatabase;
	node: ForgeNode & { baseUrl: string };
	close(): Promise<void>;
}

/** `env`: on top of the deployment's own (`forgeChainEnv`), or made from the deployment. */
export async function startChainPlatform(
	services: ServiceName[],
	env: Record<string, string> | ((deployment: ForgeDeployment) => Record<string, string>)
): Promise<ChainPlatform> {
	const chain = await startDevChain();
	const deployment = await deployForgeContracts(chain.url);
	const provider = createChainProvider(chain.url);
	const db = await createTestDatabase();
	const extra = typeof env === "function" ? env(deployment) : env;
	const node = await startTestNode({ db, services, env: { ...forgeChainEnv(deployment), ...extra } });
	return {
		chain,
		deployment,
		provider,
		db,
		node,
		async close() {
			await node.stop();
			await db.drop();
			provider.destroy();
			await chain.stop();
		}
	};
}
