/** Small HTTP helpers for the users service's integration tests (through the real gateway). */
export interface HttpResult {
	status: number;
	headers: Headers;
	// The body is checked field by field by each test.

	json: any;
	text: string;
	ms: number;
}

export function httpClient(baseUrl: () => string) {
	const call = async function call(
		method: string,
		path: string,
		init: { body?: unknown; token?: string; apiKey?: string; headers?: Record<string, string> } = {}
	): Promise<HttpResult> {
		const headers: Record<string, string> = { ...init.headers };
		if (init.body !== undefined) headers["content-type"] ??= "application/json";
		if (init.token) headers.authorization = `Bearer ${init.token}`;
		if (init.apiKey) headers["x-api-key"] = init.apiKey;
		const t = performance.now();
		const res = await fetch(baseUrl() + path, {
			method,
			headers,
			body:
				init.body === undefined
					? undefined
					: typeof init.body === "string"
						? init.body
						: JSON.stringify(init.body)
		});
		const text = await res.text();
		const ms = performance.now() - t;
		let json: unknown;
		try {
			json = JSON.parse(text);
		} catch {
			json = undefined;
		}
		return { status: res.status, headers: res.headers, json, text, ms };
	};
	// `baseUrl` read when used (the node starts after the client is made): signUp(call, ...) takes it.
	return Object.defineProperty(call, "baseUrl", { get: baseUrl }) as typeof call & { readonly baseUrl: string };
}

/** The contract's error shape, with the expected code. */
export function expectError(r: HttpResult, status: number, code: string) {
	expect({ status: r.status, code: r.json?.error?.code }).toEqual({ status, code });
	expect(r.json).toEqual({
		error: expect.objectContaining({ code, message: expect.any(String) }),
		requestId: expect.any(String)
	});
	expect(r.headers.get("x-request-id")).toBe(r.json.requestId);
	expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/);
}
