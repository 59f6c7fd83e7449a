/**
 * A small TS stand-in for the Python context service (context/), honouring its contract
 * (docs/context.md): `context.select` answers ranked frames within the budget (included paths
 * first, whole files where they fit, else the first lines as a "definitions" frame, then a map),
 * `context.index` / `context.status` record what they were asked. Its tokenizer counts words, so a
 * test can tell its counts from the platform's byte estimate. Modes script the failures: "hang"
 * never answers, "error" throws a server error.
 */
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import { selectPaths } from "../../src/context/globs";
import type { ContextFrame } from "../../src/ai/context-frames";

export interface FakeContextState {
	mode: "ok" | "hang" | "error";
	selects: Array<Record<string, unknown>>;
	indexed: Array<{ projectId: string; version: number }>;
	/** Fail the next N index calls (the bridge's retries are tested with it). */
	failIndex: number;
	/** Lets every hanging select go (with an error), so the service can stop without waiting for them. */
	releaseHangs(): void;
}

export const fakeTokens = (text: string) => text.split(/\s+/).filter(Boolean).length;

interface ReadContext {
	version: number;
	files: Array<{ path: string; content: string }>;
	omitted: Array<{ path: string; reason: string }>;
}

export function fakeContextService(nodeName = "context"): { schema: ServiceSchema; state: FakeContextState } {
	const hanging: Array<() => void> = [];
	const state: FakeContextState = {
		mode: "ok",
		selects: [],
		indexed: [],
		failIndex: 0,
		releaseHangs: () => hanging.splice(0).forEach(f => f())
	};
	const schema: ServiceSchema = {
		name: "context",
		actions: {
			select: {
				visibility: "public",
				params: {
					projectId: "string",
					version: { type: "number", integer: true, min: 1 },
					userId: "string",
					query: "string",
					budgetTokens: { type: "number", integer: true, min: 0 },
					include: { type: "array", items: "string", optional: true },
					exclude: { type: "array", items: "string", optional: true }
				},
				async handler(
					ctx: Context<{
						projectId: string;
						version: number;
						userId: string;
						query: string;
						budgetTokens: number;
						include?: string[];
						exclude?: string[];
					}>
				) {
					state.selects.push({ ...ctx.params });
					if (state.mode === "hang")
						return new Promise((_, reject) => hanging.push(() => reject(new Error("released"))));
					if (state.mode === "error")
						throw new Errors.MoleculerServerError("index broken", 500, "INDEX_BROKEN", { node: nodeName });
					const p = ctx.params;
					const probe = await ctx.call<ReadContext, unknown>("projects.readContext", {
						projectId: p.projectId,
						userId: p.userId,
						version: p.version,
						maxBytes: 1
					});
					const all = [...probe.files.map(f => f.path), ...probe.omitted.map(o => o.path)].sort();
					const included = p.include?.length ? selectPaths(all, p.include, p.exclude) : [];
					const words = new Set(
						p.query
							.toLowerCase()
							.split(/\W+/)
							.filter(w => w.length > 2)
					);
					const score = (path: string) => [...words].filter(w => path.toLowerCase().includes(w)).length;
					const rest = selectPaths(all, undefined, p.exclude)
						.filter(x => !included.includes(x))
						.sort((a, b) => score(b) - score(a) || a.localeCompare(b));
					const order = [...included, ...rest];
					const read = await ctx.call<ReadContext, unknown>("projects.readContext", {
						projectId: p.projectId,
						userId: p.userId,
						version: p.version,
						maxBytes: 10_000_000,
						paths: order
					});
					const content = new Map(read.files.map(f => [f.path, f.content]));
					const frames: ContextFrame[] = [];
					let used = 0;
					const shown = new Set<string>();
					for (const path of order) {
						const text = content.get(path);
						if (text === undefined) continue;
						const lines = text.replace(/\n$/, "").split("\n");
						const whole = fakeTokens(text);
						if (used + whole <= p.budgetTokens) {
							frames.push({ kind: "file", path, lines: [1, lines.length], tokens: whole, text });
							used += whole;
							shown.add(path);
							continue;
						}
						let k = lines.length;
						while (k > 0 && used + fakeTokens(lines.slice(0, k).join("\n")) > p.budgetTokens) k--;
						if (k > 0 && k >= Math.min(3, lines.length)) {
							const t = lines.slice(0, k).join("\n");
							frames.push({ kind: "definitions", path, lines: [1, k], tokens: fakeTokens(t), text: t });
							used += fakeTokens(t);
							shown.add(path);
						}
					}
					const mapText = order.filter(x => !shown.has(x)).join("\n");
					if (mapText && used + fakeTokens(mapText) <= p.budgetTokens) {
						frames.push({ kind: "map", tokens: fakeTokens(mapText), text: mapText });
						used += fakeTokens(mapText);
					}
					return {
						projectId: p.projectId,
						version: p.version,
						budgetTokens: p.budgetTokens,
						usedTokens: used,
						tokenizer: "fake-words",
						indexed: true,
						frames
					};
				}
			},
			index: {
				visibility: "public",
				params: { projectId: "string", version: { type: "number", integer: true, min: 1 } },
				handler(ctx: Context<{ projectId: string; version: number }>) {
					if (state.failIndex > 0) {
						state.failIndex--;
						throw new Errors.MoleculerRetryableError("indexer busy", 503, "INDEX_BUSY");
					}
					state.indexed.push({ projectId: ctx.params.projectId, version: ctx.params.version });
					return { projectId: ctx.params.projectId, version: ctx.params.version, indexed: true };
				}
			},
			status: {
				visibility: "public",
				params: { projectId: "string" },
				handler(ctx: Context<{ projectId: string }>) {
					const versions = state.indexed
						.filter(i => i.projectId === ctx.params.projectId)
						.map(i => i.version);
					return {
						projectId: ctx.params.projectId,
						indexedVersions: versions,
						latest: versions.length ? Math.max(...versions) : null
					};
				}
			}
		}
	};
	return { schema, state };
}
