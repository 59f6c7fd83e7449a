/** Whether an Accept header asks for an event stream: a `text/event-stream` range with q > 0. */
export function wantsEventStream(accept: string | string[] | undefined): boolean {
	if (typeof accept !== "string") return false;
	for (const range of accept.slice(0, 1024).split(",")) {
		const [type, ...params] = range.split(";").map(p => p.trim().toLowerCase());
		if (type !== "text/event-stream") continue;
		const q = params.find(p => p.startsWith("q="));
		if (q === undefined || Number(q.slice(2)) > 0) return true;
	}
	return false;
}
