/** Moleculer's errors for a call that never left the caller: no node with the service known, or none available. */
export function sentNowhere(err: unknown): boolean {
	const type = (err as { type?: string } | null)?.type;
	return type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE";
}
