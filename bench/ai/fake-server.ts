/** The bench's provider: the fake OpenAI server in its own process, so it does not share the client's event loop. */
import { startFakeOpenAI } from "../../test/support/fake-openai";

const CHUNKS = Number(process.env.CHUNKS ?? 20);
startFakeOpenAI().then(fake => {
	fake.setDefault({ kind: "ok", chunks: Array.from({ length: CHUNKS }, (_, i) => ` t${i}`) });
	// Keep no request log: the bench sends hundreds of thousands.
	setInterval(() => (fake.requests.length = 0), 1000).unref();
	process.stdout.write(`${fake.url}\n`);
	process.on("SIGTERM", () => void fake.close().then(() => process.exit(0)));
});
