/** Time measured for logs, metrics and health reports. */

/** Milliseconds since `startedAt` (a `performance.now()` reading), to a tenth of a millisecond. */
export function elapsedMs(startedAt: number): number {
	return Math.round((performance.now() - startedAt) * 10) / 10;
}
