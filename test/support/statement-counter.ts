/**
 * Counts the statements a Sequelize instance's pooled connections send, by a kind the caller names
 * from each statement's text (null: not counted). Works for `sequelize.query` and for statements
 * sent straight on a pooled connection (src/db/direct.ts) alike: it wraps each connection's `query`
 * as the pool hands it out. Give the code under test a Sequelize of its own, so other services'
 * statements on a shared pool are not counted.
 */
import type { Sequelize } from "sequelize";

export function countStatements<K extends string>(
	seq: Sequelize,
	kindOf: (text: string) => K | null
): { counts: Partial<Record<K, number>>; reset(): void } {
	const out = { counts: {} as Partial<Record<K, number>>, reset: () => void (out.counts = {}) };
	const cm = seq.connectionManager as unknown as { getConnection(o: unknown): Promise<Record<string, unknown>> };
	const get = cm.getConnection.bind(cm);
	const wrapped = new WeakSet<object>();
	cm.getConnection = async o => {
		const conn = await get(o);
		if (!wrapped.has(conn)) {
			wrapped.add(conn);
			const query = (conn.query as (...a: unknown[]) => unknown).bind(conn);
			conn.query = (...a: unknown[]) => {
				const first = a[0] as string | { text?: string } | undefined;
				const kind = kindOf(typeof first === "string" ? first : String(first?.text ?? ""));
				if (kind) out.counts[kind] = (out.counts[kind] ?? 0) + 1;
				return query(...a);
			};
		}
		return conn;
	};
	return out;
}
