/**
 * The queue snapshot behind GET /queue/stats and the cached queue positions (src/tasks/queue-meta.ts):
 * depth and waiting per tier, the expected wait of a newcomer, and the rolling wait percentiles. And
 * the cluster's worker capacity, as the ai nodes publish it in the registry.
 */
import { TIER_ORDER } from "../domain/tiers";
import { emptyByTier, type QueueMeta, type QueueSnapshot } from "./queue-meta";
import { percentile } from "./rules";
import { queuePositions, tierBacklogWaitMs } from "./scheduling";
import type { TaskStore } from "./store";

export interface SnapshotDeps {
	store: Pick<TaskStore, "queued" | "countByState" | "medianRunMs" | "recentWaits">;
	meta: Pick<QueueMeta, "waits" | "replaceWaits">;
	capacity: number;
	config: { defaultRunMs: number; minCapacity: number };
}

export async function buildSnapshot(
	deps: SnapshotDeps,
	now: number
): Promise<{ snapshot: QueueSnapshot; positions: Map<string, number> }> {
	const { store, meta, capacity } = deps;
	const queued = await store.queued();
	const positions = queuePositions(queued, now);
	const depth = emptyByTier(0);
	const waiting = emptyByTier(0);
	for (const t of queued) {
		depth[t.tier]++;
		if (!positions.has(t.id)) waiting[t.tier]++;
	}
	const counts = await store.countByState();
	const p50RunMs = (await store.medianRunMs()) ?? deps.config.defaultRunMs;
	const expectedWaitMs = tierBacklogWaitMs(queued, now, {
		capacity: Math.max(capacity, deps.config.minCapacity),
		p50RunMs,
		idleWorkers: Math.max(0, capacity - counts.running)
	});
	const waitP50Ms = emptyByTier<number | null>(null);
	const waitP99Ms = emptyByTier<number | null>(null);
	for (const tier of TIER_ORDER) {
		let samples = await meta.waits(tier);
		if (!samples.length) {
			// Redis was wiped (or this is a fresh start): rebuild the rolling samples from PostgreSQL.
			samples = await store.recentWaits(tier, 1_000);
			if (samples.length) await meta.replaceWaits(tier, samples);
		}
		waitP50Ms[tier] = percentile(samples, 50);
		waitP99Ms[tier] = percentile(samples, 99);
	}
	const running = counts.running;
	const snapshot = { at: now, depth, waiting, running, capacity, p50RunMs, expectedWaitMs, waitP50Ms, waitP99Ms };
	return { snapshot, positions };
}

/**
 * Worker slots of the available ai nodes, from each node's `settings.capacity` in the registry. The
 * contract says `settings.capacity`; the ai service publishes it as `{ slots }`. Both count.
 */
export function capacityOf(services: ReadonlyArray<{ name: string; settings?: { capacity?: unknown } }>): number {
	let total = 0;
	for (const s of services) {
		if (s.name !== "ai") continue;
		const c = s.settings?.capacity;
		const slots = typeof c === "object" && c !== null ? (c as { slots?: unknown }).slots : c;
		total += Math.max(0, Math.floor(Number(slots ?? 0)) || 0);
	}
	return total;
}
