/**
 * A schema-driven fuzzer of the REST contract: it reads /api/openapi.json and sends every operation
 * its params mutated by type (null, wrong types), size (100 KB strings, 5,000-item arrays, deep
 * nesting), Unicode (NUL, bidi overrides, lone surrogates, NFKC look-alikes) and encoding (a gzip
 * header on a plain body, broken JSON, the wrong media type, hostile path segments), with and without
 * credentials. Each answer must be below 500, at most 64 KB, and an error must have the contract's
 * shape. Deterministic: the cases come from a seeded PRNG, so a seed reproduces a run.
 */
import { randomUUID } from "node:crypto";

type Json = Record<string, any>; // OpenAPI fragments are walked field by field

export interface FuzzCredentials {
	/** Headers that authenticate as a user, and as an admin. */
	user: Record<string, string>;
	admin: Record<string, string>;
	/** Real ids, so handlers go past their lookups: the user's project, another user. */
	projectId: string;
	otherUserId: string;
}

export interface FuzzViolation {
	method: string;
	path: string;
	mutation: string;
	status: number;
	bytes: number;
	problem: string;
	body: string;
}

export interface FuzzReport {
	requests: number;
	operations: number;
	byStatus: Record<string, number>;
	violations: FuzzViolation[];
	/** Documented 503s for features this deployment does not configure (CHAIN_NOT_CONFIGURED...). */
	notConfigured: number;
}

export const MAX_RESPONSE_BYTES = 64 * 1024;
const CODE_RE = /^[A-Z][A-Z0-9_]*$/;

/** mulberry32: small, seedable, good enough to pick cases. */
export function prng(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

const UNICODE = [
	"nul\u0000byte",
	"\u202egnp.exe",
	"\ud800lone",
	"\ufb00\u2126\u212b", // NFKC changes these
	"😀".repeat(2000),
	"Ω≈ç√∫˜µ≤≥÷",
	"../../etc/passwd",
	"<script>alert(1)</script>",
	"' OR 1=1 --",
	"%00%ff%c0%af"
];

function deep(depth: number): unknown {
	let v: unknown = {};
	for (let i = 0; i < depth; i++) v = { a: v };
	return v;
}

/** A value the field's schema accepts (as far as a JSON Schema subset says). */
function validValue(schema: Json | undefined): unknown {
	if (!schema) return "x";
	if (schema.enum) return schema.enum[0];
	if (schema.default !== undefined) return schema.default;
	if (schema.anyOf) return validValue(schema.anyOf[0]);
	switch (schema.type) {
		case "integer":
		case "number":
			return schema.minimum ?? 1;
		case "boolean":
			return true;
		case "array":
			return [validValue(schema.items)];
		case "object":
			return Object.fromEntries(
				Object.entries((schema.properties ?? {}) as Record<string, Json>)
					.filter(([k]) => (schema.required ?? []).includes(k))
					.map(([k, s]) => [k, validValue(s)])
			);
		default:
			if (schema.format === "uuid") return randomUUID();
			if (schema.format === "email") return `fuzz-${randomUUID().slice(0, 8)}@example.com`;
			if (schema.format === "date-time") return new Date().toISOString();
			return "x".repeat(Math.max(1, schema.minLength ?? 1));
	}
}

/** The mutations of one field's value, in a fixed order; the PRNG picks which variant of each. */
function fieldMutations(rand: () => number): Array<[string, unknown]> {
	const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
	return [
		["null", null],
		["wrong type", pick<unknown>([12345, -1, 1e308, 0.5, true, "str", [], {}, [null], { $gt: "" }])],
		[
			"size",
			pick<unknown>([
				"a".repeat(100_000),
				Array.from({ length: 5000 }, (_, i) => ({ bad: i })),
				Array.from({ length: 5000 }, (_, i) => `x${i}`),
				deep(400)
			])
		],
		["unicode", pick(UNICODE)]
	];
}

/** Percent-encodes a query value; a lone surrogate (which has no UTF-8) goes as its raw CESU-8 bytes. */
function encodeQuery(v: string): string {
	try {
		return encodeURIComponent(v);
	} catch {
		return encodeURIComponent(v.replace(/[\ud800-\udfff]/g, "\ufffd")).replace(/%EF%BF%BD/g, "%ED%A0%80");
	}
}

const PATH_SEGMENTS = [
	"nonexistent",
	"%00",
	"a".repeat(3000),
	"%F0%9F%98",
	"..%2F..%2Fadmin",
	"%E2%80%AE",
	"-1",
	"1e999"
];

interface Case {
	method: string;
	path: string;
	mutation: string;
	headers: Record<string, string>;
	body?: string | Buffer;
}

/** Every operation of the document, with the cases the seed gives it. */
export function fuzzCases(doc: Json, creds: FuzzCredentials, seed: number): { cases: Case[]; operations: number } {
	const rand = prng(seed);
	const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
	const cases: Case[] = [];
	let operations = 0;
	for (const [template, ops] of Object.entries(doc.paths as Record<string, Json>)) {
		// The platform's own contract (its error shape, its codes). The compatible /v1 routes answer
		// in OpenAI's and Anthropic's shapes; their refusals are tested by the SDK suites (test/integration/compat).
		if (!template.startsWith("/api/")) continue;
		for (const [method, op] of Object.entries(ops as Record<string, Json>)) {
			const streams = Object.values((op.responses ?? {}) as Record<string, Json>).some(
				r => r?.content?.["text/event-stream"]
			);
			if (streams) continue; // streams are not request/answer
			operations++;
			const M = method.toUpperCase();
			const admin = op["x-admin"] === true || String(op.description ?? "").includes("admin");
			const own = admin ? creds.admin : creds.user;
			const fill = (segment: string) =>
				template.replace(/\{([^}]+)\}/g, (_, name: string) => {
					if (segment) return segment;
					if (name === "path") return "src/a.txt";
					if (template.startsWith("/api/v1/projects/")) return creds.projectId;
					if (template.startsWith("/api/v1/admin/users/")) return creds.otherUserId;
					return randomUUID();
				});
			const params = (op.parameters ?? []) as Json[];
			const query = params.filter(p => p.in === "query");
			const bodySchema = op.requestBody?.content?.["application/json"]?.schema as Json | undefined;
			const props = (bodySchema?.properties ?? {}) as Record<string, Json>;
			const validBody = bodySchema ? (validValue(bodySchema) as Json) : undefined;
			const json = (v: unknown) => ({
				headers: { "Content-Type": "application/json" },
				body: JSON.stringify(v)
			});

			// Each body field and each query parameter, mutated four ways, with the operation's own credentials.
			for (const [field] of Object.entries(props))
				for (const [kind, value] of fieldMutations(rand)) {
					const j = json({ ...validBody, [field]: value });
					cases.push({
						method: M,
						path: fill(""),
						mutation: `body.${field}: ${kind}`,
						headers: { ...own, ...j.headers },
						body: j.body
					});
				}
			for (const q of query)
				for (const [kind, value] of fieldMutations(rand)) {
					const v = typeof value === "string" ? value : JSON.stringify(value);
					const qs = `${encodeURIComponent(q.name)}=${encodeQuery(String(v).slice(0, 6000))}`;
					cases.push({
						method: M,
						path: `${fill("")}?${qs}&${qs}`,
						mutation: `query.${q.name}: ${kind}`,
						headers: { ...own }
					});
				}
			// Hostile path segments.
			if (template.includes("{"))
				cases.push({
					method: M,
					path: fill(pick(PATH_SEGMENTS)),
					mutation: "path segment",
					headers: { ...own }
				});
			// Encodings and shapes of the whole body.
			if (M !== "GET" && M !== "DELETE") {
				const plain = JSON.stringify(validBody ?? {});
				const encodings: Array<[string, Record<string, string>, string | Buffer]> = [
					[
						"gzip header on a plain body",
						{ "Content-Type": "application/json", "Content-Encoding": "gzip" },
						plain
					],
					[
						"deflate header on a plain body",
						{ "Content-Type": "application/json", "Content-Encoding": "deflate" },
						plain
					],
					["broken JSON", { "Content-Type": "application/json" }, plain.slice(0, -1) + ",}"],
					["text/plain", { "Content-Type": "text/plain" }, plain],
					["latin-1 charset", { "Content-Type": "application/json; charset=latin1" }, plain],
					["array body", { "Content-Type": "application/json" }, JSON.stringify([validBody])],
					["null body", { "Content-Type": "application/json" }, "null"],
					[
						"invalid UTF-8",
						{ "Content-Type": "application/json" },
						Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])
					]
				];
				for (const [mutation, headers, body] of encodings) {
					cases.push({ method: M, path: fill(""), mutation, headers: { ...own, ...headers }, body });
					if (rand() < 0.3)
						cases.push({ method: M, path: fill(""), mutation: `${mutation}, anonymous`, headers, body });
				}
			}
			// Without credentials, and with forged ones.
			const anon = json(validBody ?? {});
			cases.push({
				method: M,
				path: fill(""),
				mutation: "anonymous",
				headers: M === "GET" ? {} : anon.headers,
				body: M === "GET" ? undefined : anon.body
			});
			cases.push({
				method: M,
				path: fill(""),
				mutation: "forged credentials",
				headers: pick<Record<string, string>>([
					{ Authorization: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0." },
					{ Authorization: `Bearer ${"A".repeat(5000)}` },
					{ "X-API-Key": "ff_abc_" + "x".repeat(40) },
					{ Authorization: "Basic Zm9vOmJhcg==" }
				])
			});
		}
	}
	return { cases, operations };
}

/** Runs every case against `baseUrl`, `parallel` at a time. */
export async function runFuzz(opts: {
	baseUrl: string;
	creds: FuzzCredentials;
	seed: number;
	parallel?: number;
	maxCases?: number;
}): Promise<FuzzReport> {
	const doc = (await fetch(`${opts.baseUrl}/api/openapi.json`).then(r => r.json())) as Json;
	const { cases: all, operations } = fuzzCases(doc, opts.creds, opts.seed);
	const cases = opts.maxCases ? all.slice(0, opts.maxCases) : all;
	const report: FuzzReport = { requests: 0, operations, byStatus: {}, violations: [], notConfigured: 0 };
	let next = 0;
	await Promise.all(
		Array.from({ length: opts.parallel ?? 6 }, async () => {
			while (next < cases.length) {
				const c = cases[next++];
				const res = await fetch(`${opts.baseUrl}${c.path}`, {
					method: c.method,
					headers: c.headers,
					body: c.body,
					signal: AbortSignal.timeout(30_000)
				}).catch((err: Error) => err);
				report.requests++;
				const fail = (status: number, bytes: number, problem: string, body = "") =>
					report.violations.push({
						method: c.method,
						path: c.path.slice(0, 200),
						mutation: c.mutation,
						status,
						bytes,
						problem,
						body: body.slice(0, 300)
					});
				if (res instanceof Error) {
					fail(0, 0, `no answer: ${res.message}`);
					continue;
				}
				const buf = Buffer.from(await res.arrayBuffer());
				report.byStatus[res.status] = (report.byStatus[res.status] ?? 0) + 1;
				const text = buf.toString("utf8");
				if (buf.length > MAX_RESPONSE_BYTES) fail(res.status, buf.length, "response over 64 KB", text);
				if (res.status < 400) continue;
				let body: Json | null;
				try {
					body = JSON.parse(text) as Json;
				} catch {
					fail(res.status, buf.length, "error body is not JSON", text);
					continue;
				}
				const shapeOk =
					body &&
					typeof body.requestId === "string" &&
					body.requestId === res.headers.get("x-request-id") &&
					typeof body.error?.message === "string" &&
					CODE_RE.test(String(body.error?.code));
				if (!shapeOk) fail(res.status, buf.length, "error body not in the contract's shape", text);
				if (res.status >= 500) {
					if (res.status === 503 && /_NOT_CONFIGURED$/.test(String(body?.error?.code)))
						report.notConfigured++;
					else fail(res.status, buf.length, "5xx", text);
				}
			}
		})
	);
	return report;
}
