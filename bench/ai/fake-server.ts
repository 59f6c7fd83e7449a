/**
 * The bench's provider: the fake OpenAI server in its own process, so it does not share the client's
 * event loop. FIRST_TOKEN_MS / CHUNK_DELAY_MS pace the answer like a real model (the first token
 * after FIRST_TOKEN_MS, then one token every CHUNK_DELAY_MS); 0 / 0 sends the whole answer at once.
 */
import { startFakeOpenAI } from "../../test/support/fake-openai";

const CHUNKS = Number(process.env.CHUNKS ?? 20);
const CHUNK_DELAY_MS = Number(process.env.CHUNK_DELAY_MS ?? 0);
const FIRST_TOKEN_MS = Number(process.env.FIRST_TOKEN_MS ?? CHUNK_DELAY_MS);
startFakeOpenAI().then(fake => {
	fake.setDefault({
		kind: "ok",
		chunks: Array.from({ length: CHUNKS }, (_, i) => ` t${i}`),
		chunkDelayMs: CHUNK_DELAY_MS,
		firstChunkDelayMs: FIRST_TOKEN_MS
	});
	// Keep no request log: the bench sends hundreds of thousands.
	setInterval(() => (fake.requests.length = 0), 1000).unref();
	process.stdout.write(`${fake.url}\n`);
	process.on("SIGTERM", () => void fake.close().then(() => process.exit(0)));
});
