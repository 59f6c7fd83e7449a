/**
 * The gateway's memory of verified API keys, so a key's request does not wait for a PostgreSQL
 * lookup each time (`users.verifyApiKey`). On by default: an entry lives at most `ttlMs` (10 s), and
 * every use of it first checks the key's and its user's *stamps* in the shared key-value store
 * (Redis in a cluster; one round trip, two GETs). The users service writes a new stamp after a
 * change commits and before it answers: `bumpKeyStamp` when a key is revoked or its limits change,
 * `bumpUserStamp` when a user is disabled, deleted, or their role or tier changes (the users cache
 * invalidator). So the first request after such an answer, on any gateway, sees a stamp that differs
 * from the one its entry was made under and asks PostgreSQL again: the change acts at once, with no
 * wait for an event. (The `users.apiKey.revoked` / `users.forgotten` broadcasts still drop entries,
 * which frees memory; correctness no longer depends on when they arrive.)
 *
 * Why the stamps are read *before* the lookup that makes an entry: a change that commits while the
 * lookup is out writes its stamp after the commit, so an entry made from a stale answer carries the
 * older stamp and is refused at its first use. The user's id is needed for that read, and only the
 * lookup gives it: a key is remembered from its second lookup on (the first teaches its owner).
 * When the store cannot be read the key is looked up in PostgreSQL (never served from memory
 * unchecked). Organisation keys are never remembered: they must stop the moment their creator leaves
 * the organisation, which the organisations service does not stamp.
 *
 * Stamps live STAMP_TTL_MS (longer than any entry) and are random, so an expired stamp (absent)
 * never equals a written one. A key with an expiry carries it in its answer (`keyExpiresAt`), and a
 * remembered key is refused from that instant on, checked at every use of the entry (not only when
 * the entry ends). Entries are keyed by the key's SHA-256, never by the secret itself.
 */
import { createHash, randomUUID } from "node:crypto";
import type { KeyValueStore } from "../runtime/kv";
import type { AuthUser } from "./user";

export const API_KEY_CACHE_TTL_MS = 10_000;
/** Longer than any entry lives: a stamp written after an entry was made outlives the entry. */
export const STAMP_TTL_MS = 60_000;

const keyStampOf = (keyId: string) => `authstamp:k:${keyId}`;
const userStampOf = (userId: string) => `authstamp:u:${userId}`;

/** After a key's revocation or limit change committed, before the answer: gateways stop serving it from memory. */
export function bumpKeyStamp(kv: KeyValueStore, keyId: string): Promise<void> {
	return kv.set(keyStampOf(keyId), randomUUID(), STAMP_TTL_MS);
}

/** After a change of a user (disabled, deleted, role, tier) committed: every key of theirs is looked up again. */
export function bumpUserStamp(kv: KeyValueStore, userId: string): Promise<void> {
	return kv.set(userStampOf(userId), randomUUID(), STAMP_TTL_MS);
}

async function readStamp(kv: KeyValueStore, keyId: string, userId: string): Promise<string> {
	const [k, u] = await Promise.all([kv.get(keyStampOf(keyId)), kv.get(userStampOf(userId))]);
	return `${k ?? "-"}/${u ?? "-"}`;
}

interface Entry {
	user: AuthUser;
	until: number;
	stamp: string;
}

export class ApiKeyCache {
	private readonly entries = new Map<string, Entry>();
	/** Key id → its user (a key's owner never changes); kept past its entry, bounded like it. */
	private readonly owners = new Map<string, string>();
	private gen = 0;

	constructor(
		private readonly ttlMs = API_KEY_CACHE_TTL_MS,
		private readonly max = 10_000,
		private readonly now: () => number = Date.now
	) {}

	private static digest(key: string): string {
		return createHash("sha256").update(key).digest("base64url");
	}

	/** Changes whenever something is forgotten: pass the value read before a lookup to `set`. */
	get generation(): number {
		return this.gen;
	}

	get(key: string): { user: AuthUser; stamp: string } | undefined {
		const d = ApiKeyCache.digest(key);
		const e = this.entries.get(d);
		if (!e) return undefined;
		const now = this.now();
		// The key's own expiry, checked at serve time: the entry may outlive it by up to ttlMs.
		if (e.until <= now || (e.user.keyExpiresAt !== undefined && e.user.keyExpiresAt <= now)) {
			this.entries.delete(d);
			return undefined;
		}
		return { user: e.user, stamp: e.stamp };
	}

	/** Remembers a verified key, unless something was forgotten since `generation` was read. */
	set(key: string, user: AuthUser, generation: number, stamp = ""): void {
		if (this.ttlMs <= 0 || generation !== this.gen) return;
		if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string);
		this.entries.set(ApiKeyCache.digest(key), { user, until: this.now() + this.ttlMs, stamp });
	}

	drop(key: string): void {
		this.entries.delete(ApiKeyCache.digest(key));
	}

	ownerOf(keyId: string): string | undefined {
		return this.owners.get(keyId);
	}

	learnOwner(keyId: string, userId: string): void {
		if (this.owners.size >= this.max && !this.owners.has(keyId))
			this.owners.delete(this.owners.keys().next().value as string);
		this.owners.set(keyId, userId);
	}

	forgetKey(keyId: string): void {
		this.gen++;
		for (const [d, e] of this.entries) if (e.user.keyId === keyId) this.entries.delete(d);
	}

	forgetUser(userId: string): void {
		this.gen++;
		for (const [d, e] of this.entries) if (e.user.id === userId) this.entries.delete(d);
	}

	get size(): number {
		return this.entries.size;
	}
}

/** The key id of a well-formed key (`ff_<id>_<secret>`; the id has no underscore). */
export function keyIdOf(key: string): string | null {
	const end = key.indexOf("_", 3);
	return key.startsWith("ff_") && end > 3 ? key.slice(3, end) : null;
}

/**
 * A key's user: from memory when its stamps are unchanged, else from `verify` (the users service),
 * remembered when its stamps could be read before the lookup. `alongside` (the caller's next step
 * for that user, e.g. its rate limit) runs once for the user answered; on a hit it runs while the
 * stamps are read, so a remembered key costs one round trip's wait, not two.
 */
export async function resolveRemembered(
	d: { cache: ApiKeyCache; kv: KeyValueStore; verify(key: string): Promise<AuthUser | null> },
	key: string,
	alongside?: (user: AuthUser) => Promise<unknown>
): Promise<AuthUser | null> {
	const keyId = keyIdOf(key);
	const hit = d.cache.get(key);
	let ranFor: string | null = null;
	if (hit && keyId) {
		const [now] = await Promise.all([
			readStamp(d.kv, keyId, hit.user.id).catch(() => null),
			alongside?.(hit.user).then(() => (ranFor = hit.user.id))
		]);
		if (now === hit.stamp) return hit.user;
		d.cache.drop(key);
	}
	const generation = d.cache.generation;
	const owner = keyId ? d.cache.ownerOf(keyId) : undefined;
	const stamp = owner && keyId ? await readStamp(d.kv, keyId, owner).catch(() => null) : null;
	const user = await d.verify(key);
	if (user && keyId && user.keyId === keyId && !user.orgId) {
		d.cache.learnOwner(keyId, user.id);
		if (stamp !== null && owner === user.id) d.cache.set(key, user, generation, stamp);
	}
	if (user && alongside && ranFor !== user.id) await alongside(user);
	return user;
}
