/**
 * Administration of accounts: the searchable list (newest first, keyset pages on (created_at, id) with
 * the one list cursor of src/http/cursor.ts), one account in detail, and an administrator's changes
 * to role, tier override and disabled state.
 */
import type { AuthUser, Role } from "../auth/user";
import type { TierName } from "../domain/tiers";
import { Conflict, NotFound, Unprocessable } from "../errors";
import { pageOf, readCursor } from "../http/cursor";
import type { UsersStore } from "./store";
import { summarizeTier } from "./tier-facts";
import { adminUserView, sessionView, walletView } from "./views";

export interface AdminDeps {
	store: Pick<UsersStore, "listUsers" | "userById" | "tierFacts" | "walletsOf" | "sessionsOf" | "adminUpdate">;
	/** Drops the user's cached profile and tier; with `sessions`, every cached session state too. */
	forget(userId: string, opts: { sessions: boolean }): Promise<void>;
	/** Tells the cluster which fields of an account changed. */
	changed(userId: string, fields: string[]): void;
	now(): number;
}

export interface UserFilter {
	limit: number;
	cursor?: string;
	q?: string;
	role?: Role;
	disabled?: boolean;
}

export interface AdminPatch {
	role?: Role;
	tierOverride?: TierName | null;
	disabled?: boolean;
}

const CURSOR = ["time", "uuid"] as const;
/** The (created_at, id) a cursor points after (the shared cursor refuses impossible instants). */
function after(cursor: string | undefined): { createdAt: string; id: string } | null {
	const parts = readCursor(cursor, CURSOR);
	if (!parts) return null;
	const [createdAt, id] = parts;
	return { createdAt, id };
}

export class Administration {
	constructor(private readonly d: AdminDeps) {}

	async list(f: UserFilter) {
		const rows = await this.d.store.listUsers({
			limit: f.limit + 1,
			after: after(f.cursor),
			q: f.q ?? null,
			role: f.role ?? null,
			disabled: f.disabled ?? null
		});
		const page = pageOf(rows, f.limit, r => [r.cursor_at, r.id]);
		return { items: page.items.map(adminUserView), nextCursor: page.nextCursor };
	}

	async get(id: string) {
		const user = await this.d.store.userById(id);
		if (!user) throw NotFound("User");
		const [facts, wallets, sessions] = await Promise.all([
			this.d.store.tierFacts(user.id),
			this.d.store.walletsOf(user.id),
			this.d.store.sessionsOf(user.id, { includeEnded: false, limit: 50 })
		]);
		return {
			...adminUserView(user),
			tier: summarizeTier(facts, this.d.now()),
			wallets: wallets.map(walletView),
			sessions: sessions.map(s => sessionView(s))
		};
	}

	async update(actor: AuthUser, rawId: string, patch: AdminPatch) {
		const { role, tierOverride, disabled } = patch;
		const id = rawId.toLowerCase();
		if (role === undefined && tierOverride === undefined && disabled === undefined)
			throw Unprocessable("Some fields are invalid", [
				{ field: "role", message: "give at least one of role, tierOverride, disabled", type: "required" }
			]);
		if (id === actor.id && ((role !== undefined && role !== actor.role) || disabled === true))
			throw Conflict("Administrators cannot demote or disable themselves", "SELF_CHANGE_FORBIDDEN");
		const r = await this.d.store.adminUpdate(id, { role, tierOverride, disabled }, { actorId: actor.id });
		if (!r) throw NotFound("User");
		// Role and disabled state are read by the gateway per request: drop every cached session state.
		await this.d.forget(id, { sessions: role !== undefined || disabled !== undefined });
		this.d.changed(
			id,
			Object.entries(patch)
				.filter(([, v]) => v !== undefined)
				.map(([k]) => k)
		);
		return adminUserView(r.after);
	}
}
