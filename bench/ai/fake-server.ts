/**
 * The bench's provider: the fake OpenAI server in its own process, so it does not share the client's
 * event loop. FIRST_TOKEN_MS / CHUNK_DELAY_MS pace the answer like a real model (the first token
 * after FIRST_TOKEN_MS, then one token every CHUNK_DELAY_MS); 0 / 0 sends the whole answer at once.
 * ARRIVALS=1: for every request whose last message holds a tag `[ft:<tag>]`, prints
 * `arrival <tag> <wall-clock ms>` on stdout when the request's body was read (bench/firsttoken).
 */
import { startFakeOpenAI } from "../../test/support/fake-openai";

const CHUNKS = Number(process.env.CHUNKS ?? 20);
const CHUNK_DELAY_MS = Number(process.env.CHUNK_DELAY_MS ?? 0);
const FIRST_TOKEN_MS = Number(process.env.FIRST_TOKEN_MS ?? CHUNK_DELAY_MS);
const ARRIVALS = process.env.ARRIVALS === "1";
startFakeOpenAI().then(fake => {
	const answer = {
		kind: "ok" as const,
		chunks: Array.from({ length: CHUNKS }, (_, i) => ` t${i}`),
		chunkDelayMs: CHUNK_DELAY_MS,
		firstChunkDelayMs: FIRST_TOKEN_MS
	};
	fake.setDefault(body => {
		if (ARRIVALS) {
			const at = performance.timeOrigin + performance.now();
			const messages = (body.messages ?? []) as Array<{ content?: unknown }>;
			const text = JSON.stringify(messages[messages.length - 1]?.content ?? "");
			const tag = /\[ft:([A-Za-z0-9_-]+)\]/.exec(text)?.[1];
			if (tag) process.stdout.write(`arrival ${tag} ${at.toFixed(3)}\n`);
		}
		return answer;
	});
	// Keep no request log: the bench sends hundreds of thousands.
	setInterval(() => (fake.requests.length = 0), 1000).unref();
	process.stdout.write(`${fake.url}\n`);
	process.on("SIGTERM", () => void fake.close().then(() => process.exit(0)));
});
