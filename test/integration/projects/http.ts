/** HTTP helpers for the projects integration tests: JSON and raw-byte calls through the gateway. */
import http from "node:http";

export interface HttpResult {
	status: number;
	headers: Headers;
	/** Parsed JSON body when the body is JSON (tests check it field by field). */

	json: any;
	bytes: Buffer;
}

export function client(baseUrl: string) {
	async function call(
		method: string,
		path: string,
		opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}
	): Promise<HttpResult> {
		const headers: Record<string, string> = { ...(opts.headers ?? {}) };
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		let body: string | undefined;
		if (opts.body !== undefined) {
			headers["content-type"] = "application/json";
			body = JSON.stringify(opts.body);
		}
		const res = await fetch(baseUrl + path, { method, headers, body });
		const bytes = Buffer.from(await res.arrayBuffer());
		let json: unknown;
		if ((res.headers.get("content-type") ?? "").startsWith("application/json"))
			json = JSON.parse(bytes.toString("utf8"));
		return { status: res.status, headers: res.headers, json, bytes };
	}

	/** A request whose path is sent exactly as given (fetch would resolve `..` and `.` segments first). */
	function rawGet(path: string, token: string): Promise<{ status: number; body: string }> {
		const url = new URL(baseUrl);
		return new Promise((resolve, reject) => {
			const req = http.request(
				{
					host: url.hostname,
					port: url.port,
					method: "GET",
					path,
					headers: { authorization: `Bearer ${token}` }
				},
				res => {
					const chunks: Buffer[] = [];
					res.on("data", (c: Buffer) => chunks.push(c));
					res.on("end", () =>
						resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") })
					);
				}
			);
			req.on("error", reject);
			req.end();
		});
	}

	return { call, rawGet };
}

/** The contract's error shape with this status and code. */
export function expectError(r: HttpResult, status: number, code: string): void {
	expect({ status: r.status, code: r.json?.error?.code }).toEqual({ status, code });
	expect(r.json).toEqual({
		error: expect.objectContaining({ code, message: expect.any(String) }),
		requestId: expect.any(String)
	});
}

export const text = (path: string, content: string) => ({ op: "add" as const, path, content });
export const binary = (path: string, data: Buffer) => ({
	op: "add" as const,
	path,
	content: data.toString("base64"),
	encoding: "base64" as const
});
