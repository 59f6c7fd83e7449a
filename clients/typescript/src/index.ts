/**
 * The ForgeFluid API client: openapi-fetch over the types openapi-typescript generates from the
 * OpenAPI document (src/schema.d.ts; regenerate with `bash clients/typescript/scripts/generate.sh`).
 *
 *   const ff = createForgeClient({ baseUrl: "https://api.example.com" });
 *   const { data } = await ff.POST("/api/v1/auth/login", { body: { email, password } });
 *   ff.use(bearer(data!.accessToken));
 *   const { data: me } = await ff.GET("/api/v1/users/me");
 */
import createClient, { type Client, type ClientOptions, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };
export type Schemas = components["schemas"];
/** Answers typed as their JSON (a route that also streams on Accept: text/event-stream is read with parseAs: "stream"). */
export type ForgeClient = Client<paths, "application/json">;

export function createForgeClient(options: ClientOptions): ForgeClient {
	return createClient<paths, "application/json">(options);
}

/** Sends `Authorization: Bearer <token>` on every request. */
export function bearer(token: string): Middleware {
	return {
		onRequest({ request }) {
			request.headers.set("Authorization", `Bearer ${token}`);
			return request;
		}
	};
}

/** Sends `X-API-Key` on every request. */
export function apiKey(key: string): Middleware {
	return {
		onRequest({ request }) {
			request.headers.set("X-API-Key", key);
			return request;
		}
	};
}

/** One Server-Sent Event of a stream (GET /api/v1/tasks/{id}/events). */
export interface SseEvent {
	event: string;
	id?: string;
	data: unknown;
}

/** Reads a text/event-stream body frame by frame; stops when `until` says so or the stream ends. */
export async function readEvents(
	body: ReadableStream<Uint8Array>,
	until?: (e: SseEvent) => boolean
): Promise<SseEvent[]> {
	const reader = body.getReader();
	const decoder = new TextDecoder();
	const events: SseEvent[] = [];
	let buf = "";
	try {
		for (;;) {
			const { value, done } = await reader.read();
			if (done) break;
			buf += decoder.decode(value, { stream: true });
			let i: number;
			while ((i = buf.indexOf("\n\n")) >= 0) {
				const block = buf.slice(0, i);
				buf = buf.slice(i + 2);
				const event = /^event: (.*)$/m.exec(block)?.[1];
				const data = /^data: (.*)$/m.exec(block)?.[1];
				const id = /^id: (.*)$/m.exec(block)?.[1];
				if (!event || data === undefined) continue;
				const e: SseEvent = { event, data: JSON.parse(data), ...(id ? { id } : {}) };
				events.push(e);
				if (until?.(e)) return events;
			}
		}
	} finally {
		await reader.cancel().catch(() => undefined);
	}
	return events;
}
