import { wantsEventStream } from "../../../src/http/accept";

test.each([
	["text/event-stream", true],
	["Text/Event-Stream; charset=utf-8", true],
	["application/json, text/event-stream;q=0.5", true],
	["text/event-stream;q=0", false],
	["application/json", false],
	["*/*", false],
	["text/*", false],
	["", false],
	[undefined, false]
] as const)("Accept %p asks for an event stream: %p", (accept, want) => {
	expect(wantsEventStream(accept)).toBe(want);
});
