/**
 * Jest setup for the integration and cluster suites: every response a test receives through `fetch`
 * from a route of the REST contract (/api/v1/...) is checked against the OpenAPI document (its
 * route, its status, its body's schema). A mismatch rejects that fetch and fails the test.
 * Test-only routes that the document does not have (probe fixtures) are not checked.
 */
import { ContractValidator, API_BASE } from "./contract";

const validator = new ContractValidator();
const violations: string[] = [];
const realFetch = globalThis.fetch;

/** Exposed for the test that proves a broken response is caught. */
export const contractViolations = violations;

globalThis.fetch = async function checkedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
	const res = await realFetch(input, init);
	const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
	const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
	if (!url.pathname.startsWith(`${API_BASE}/`) || method === "HEAD" || method === "OPTIONS") return res;
	const contentType = res.headers.get("content-type") ?? "";
	// A stream is not read here (it may never end); its status and media type are still checked.
	const text = contentType.startsWith("text/event-stream") ? undefined : await res.clone().text();
	const problems = validator.check({ method, path: url.pathname, status: res.status, contentType, text });
	if (problems.length) {
		violations.push(...problems);
		throw new Error(`The response does not match the OpenAPI contract:\n  ${problems.join("\n  ")}`);
	}
	return res;
} as typeof fetch;

afterEach(() => {
	// A test that caught the fetch's rejection still fails.
	if (violations.length) {
		const found = violations.splice(0);
		throw new Error(`Responses did not match the OpenAPI contract:\n  ${found.join("\n  ")}`);
	}
});
