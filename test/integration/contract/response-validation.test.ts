/**
 * The fetch hook of the integration suites (test/support/validate-responses.ts) fails a test whose
 * response does not match the OpenAPI document. Proven here against a server that answers a route of
 * the contract with a broken body, an undeclared status and a wrong media type.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { contractViolations } from "../../support/validate-responses";

let server: http.Server;
let base: string;
let answer: { status: number; type: string; body: string } = { status: 200, type: "application/json", body: "{}" };

beforeAll(async () => {
	server = http.createServer((_req, res) => {
		res.writeHead(answer.status, { "content-type": answer.type });
		res.end(answer.body);
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>(resolve => server.close(() => resolve())));

const revoked = { id: "430d21ea-890d-433a-a4e7-6cacce909004", revoked: true };

test("a response that matches its route's schema passes", async () => {
	answer = { status: 200, type: "application/json; charset=utf-8", body: JSON.stringify(revoked) };
	const res = await fetch(`${base}/api/v1/users/me/sessions/${revoked.id}`, { method: "DELETE" });
	expect(await res.json()).toEqual(revoked);
	expect(contractViolations).toEqual([]);
});

test.each([
	[
		"a field of the wrong type",
		200,
		"application/json",
		JSON.stringify({ ...revoked, revoked: "yes" }),
		/revoked must be boolean/
	],
	[
		"a missing field",
		200,
		"application/json",
		JSON.stringify({ id: revoked.id }),
		/must have required property 'revoked'/
	],
	[
		"an id that is not a UUID",
		200,
		"application/json",
		JSON.stringify({ ...revoked, id: "x" }),
		/must match format "uuid"/
	],
	["an undeclared status", 418, "application/json", "{}", /status 418 is not declared/],
	[
		"an error body not in the contract's shape",
		404,
		"application/json",
		JSON.stringify({ message: "nope" }),
		/required property 'error'/
	],
	["a body that is not JSON", 200, "text/html", "<p>hi</p>", /content type text\/html is not declared/]
])("%s fails the fetch", async (_what, status, type, body, message) => {
	answer = { status, type, body };
	await expect(fetch(`${base}/api/v1/users/me/sessions/${revoked.id}`, { method: "DELETE" })).rejects.toThrow(
		message
	);
	// The hook also fails the test after it; this test expected the failure, so it takes it back.
	expect(contractViolations.length).toBeGreaterThan(0);
	contractViolations.splice(0);
});
