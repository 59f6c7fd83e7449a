/**
 * The gateway's memory of verified API keys, so a key's request does not wait for a PostgreSQL
 * lookup each time (`users.verifyApiKey`). An entry lives at most `ttlMs` (10 s), and is dropped at
 * once when the users service says the key or its user changed: `users.apiKey.revoked` (a key
 * revoked) and `users.forgotten` (a user disabled, deleted, or whose role or tier changed; sent by
 * the users service's cache invalidator). A verification that was in flight while such an event
 * arrived is not remembered (generation check), so a late answer cannot bring a revoked key back.
 * Events are at most once: a lost one leaves a key usable for at most `ttlMs`, as a key past its
 * expiry is (expiry is not in the answer; the next lookup after the entry ends refuses it).
 * Entries are keyed by the key's SHA-256, never by the secret itself. Hand-written (about 40 lines):
 * the invalidation by key id and by user id and the generation guard are the whole point, and an
 * LRU package would add only the eviction order.
 */
import { createHash } from "node:crypto";
import type { AuthUser } from "./user";

// Off (0): a disabled or revoked key must stop at once on every gateway, and the invalidation events
// can arrive after the next request (seen in the users cluster test). Kept for a later, synchronous design.
export const API_KEY_CACHE_TTL_MS = 0;

export class ApiKeyCache {
	private readonly entries = new Map<string, { user: AuthUser; until: number }>();
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

	get(key: string): AuthUser | undefined {
		const d = ApiKeyCache.digest(key);
		const e = this.entries.get(d);
		if (!e) return undefined;
		if (e.until <= this.now()) {
			this.entries.delete(d);
			return undefined;
		}
		return e.user;
	}

	/** Remembers a verified key, unless something was forgotten since `generation` was read. */
	set(key: string, user: AuthUser, generation: number): void {
		if (this.ttlMs <= 0 || generation !== this.gen) return;
		if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string);
		this.entries.set(ApiKeyCache.digest(key), { user, until: this.now() + this.ttlMs });
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
