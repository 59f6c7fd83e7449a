/**
 * Key lists in the configuration: `kid:value[,kid:value]`, the first one active (JWT_KEYS,
 * MFA_ENCRYPTION_KEYS). Spaces around parts and empty parts are ignored.
 */

/**
 * The list's keys as `make` builds them from each kid and value, or null when `make` refuses one
 * (it returns null) or a part has no kid before its colon.
 */
export function parseKeyList<K>(raw: string, make: (kid: string, value: string) => K | null): K[] | null {
	const keys: K[] = [];
	for (const part of raw
		.split(",")
		.map(s => s.trim())
		.filter(Boolean)) {
		const idx = part.indexOf(":");
		const key = idx > 0 ? make(part.slice(0, idx), part.slice(idx + 1)) : null;
		if (key === null) return null;
		keys.push(key);
	}
	return keys;
}
