/**
 * The tasks sweeper and the settlement of finished tasks (docs/task-lifecycle.md).
 *
 * A finished task's hold is settled (charged what it cost) or released once; the task row says
 * `settlement = 'pending'` until payments confirmed it, so a failed try is retried by the sweeper.
 * Each sweep: leases whose holder stopped heartbeating go back to the queue (or finish when no attempt
 * is left); settlements still pending after a grace period are tried again; holds whose task never
 * came to exist (hold intents without a task) are released. Collaborators come in as parameters.
 */
import { settledUsageOf, type SettledUsage } from "../payments/usage";
import { afterLeaseExpiry, leaseIsLost, settlementFor } from "./rules";
import type { TaskRow, TaskStore } from "./store";

/** The payments actions a settlement calls (over the broker in the service). */
export interface HoldPayments {
	settle(input: {
		userId: string;
		taskId: string;
		actualCost: number;
		/** What the task used, for the usage report (src/payments/usage.ts settledUsageOf). */
		usage?: SettledUsage;
	}): Promise<unknown>;
	release(input: { userId: string; taskId: string }): Promise<unknown>;
}

export interface SettleDeps {
	store: Pick<TaskStore, "markSettlement">;
	payments: HoldPayments;
	warn(message: string, detail: string): void;
}

export interface SweepDeps extends SettleDeps {
	store: Pick<
		TaskStore,
		| "transaction"
		| "lockExpired"
		| "requeue"
		| "finish"
		| "lockPendingSettlements"
		| "markSettlement"
		| "lockStaleHoldIntents"
		| "dropHoldIntent"
	>;
	/** Whether the node holding a lease is still in the registry and available. */
	holderAlive(nodeId: string | null): boolean;
	/** The rows this sweep took off expired leases (requeued or finished), once committed: to count and announce. */
	onExpired(rows: TaskRow[]): Promise<void>;
	/** How long past its expiry a lease of a live holder is kept; how old a pending settlement or a hold intent must be to be retried. */
	graceMs: { lease: number; settlement: number; holdIntent: number };
}

const usageField = (u: SettledUsage | undefined) => (u ? { usage: u } : {});

const isCode = (err: unknown, code: string) => (err as { type?: string })?.type === code;

/** Settles (or releases) a finished task's hold once; a failure leaves it pending for the sweeper. Never rejects. */
export async function settleTask(deps: SettleDeps, r: TaskRow): Promise<void> {
	if (r.settlement !== "pending") return;
	const s = settlementFor(
		Number(r.spent_credits),
		r.state === "succeeded" ? Number(r.cost_credits ?? 0) - Number(r.spent_credits) : 0,
		Number(r.max_cost_credits)
	);
	// The payer decided at submission (a member who left since changes nothing); older rows: the user.
	const payerId = r.payer_id ?? r.user_id;
	try {
		if (s.action === "settle")
			await deps.payments.settle({
				userId: payerId,
				taskId: r.id,
				actualCost: s.actualCost,
				...usageField(settledUsageOf(r.usage))
			});
		else await deps.payments.release({ userId: payerId, taskId: r.id });
		await deps.store.markSettlement(r.id, s.action === "settle" ? "settled" : "released");
	} catch (err) {
		// Settled or released before (a retry after a lost answer): record what payments has.
		const known = isCode(err, "HOLD_ALREADY_SETTLED")
			? "settled"
			: isCode(err, "HOLD_RELEASED")
				? "released"
				: null;
		if (!known) {
			deps.warn(`settlement of task ${r.id} failed; the sweeper retries`, (err as Error).message);
			return;
		}
		await deps.store
			.markSettlement(r.id, known)
			.catch(e => deps.warn(`settlement mark of task ${r.id} failed; the sweeper retries`, (e as Error).message));
	}
}

/** Expired leases of dead or stalled holders: back to the queue, or finished when no attempt is left. */
function expireLeases(deps: SweepDeps, now: number): Promise<TaskRow[]> {
	const { store } = deps;
	return store.transaction(async tx => {
		const out: TaskRow[] = [];
		for (const cur of await store.lockExpired(now, 100, tx)) {
			const expiresAt = cur.lease_expires_at!.getTime();
			const holderAlive = deps.holderAlive(cur.node_id);
			if (!leaseIsLost({ expiresAt, now, holderAlive, graceMs: deps.graceMs.lease })) continue;
			const next = afterLeaseExpiry({
				cancelRequested: cur.cancel_requested,
				attempts: cur.attempts,
				maxAttempts: cur.max_attempts
			});
			const error = {
				code: "LEASE_EXPIRED",
				message: `The worker on ${cur.node_id ?? "an unknown node"} stopped heartbeating`,
				attempt: cur.attempts
			};
			// The old lease id stays until another attempt leases the task: a late report is still taken.
			if (next === "queued")
				out.push(await store.requeue(cur.id, { now, notBefore: null, error, keepLeaseId: true }, tx));
			else {
				const spent = Number(cur.spent_credits);
				const end = { state: next, now, spentCredits: spent, costCredits: spent, error };
				out.push(await store.finish(cur.id, end, tx));
			}
		}
		return out;
	});
}

/**
 * Holds taken for tasks that never came to exist (the node died between reserve and insert, or a
 * reserve committed after its caller gave up). The grace period outlasts any reserve still in
 * flight; release is idempotent, and 404 means there was no hold at all.
 */
async function releaseOrphans(deps: SweepDeps, now: number): Promise<number> {
	const { store } = deps;
	const orphans = await store.transaction(tx => store.lockStaleHoldIntents(now - deps.graceMs.holdIntent, 50, tx));
	let released = 0;
	for (const o of orphans) {
		// The intent's user_id is the payer the hold was taken on.
		try {
			await deps.payments.release({ userId: o.user_id, taskId: o.task_id });
			released++;
		} catch (err) {
			if (!isCode(err, "NOT_FOUND")) {
				deps.warn(`release of orphaned hold ${o.task_id} failed; the sweeper retries`, (err as Error).message);
				continue;
			}
		}
		await store.dropHoldIntent(o.task_id);
	}
	return released;
}

/** One sweep: expired leases, then settlements whose first try failed, then orphaned holds. */
export async function sweepOnce(
	deps: SweepDeps,
	now: number
): Promise<{ expired: number; settled: number; orphansReleased: number }> {
	const expired = await expireLeases(deps, now);
	await deps.onExpired(expired);
	// Settlements whose first try failed (payments down, node died between commit and call).
	const pending = await deps.store.transaction(tx =>
		deps.store.lockPendingSettlements(now - deps.graceMs.settlement, 50, tx)
	);
	for (const row of pending) await settleTask(deps, row);
	const orphansReleased = await releaseOrphans(deps, now);
	return { expired: expired.length, settled: pending.length, orphansReleased };
}
