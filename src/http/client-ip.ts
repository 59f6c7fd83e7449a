import type { IncomingMessage } from "node:http";

/**
 * The client's address. With TRUST_PROXY_HOPS = n > 0 (the gateway sits behind n proxies that append
 * to X-Forwarded-For), the n-th address from the right; anything further left is client-supplied and
 * ignored. Without it, the socket's peer.
 */
export function clientIp(req: IncomingMessage, trustedHops: number): string {
	if (trustedHops > 0) {
		const xff = req.headers["x-forwarded-for"];
		const hops = (Array.isArray(xff) ? xff.join(",") : (xff ?? ""))
			.split(",")
			.map(s => s.trim())
			.filter(Boolean);
		if (hops.length >= trustedHops) return hops[hops.length - trustedHops].slice(0, 64);
	}
	return req.socket.remoteAddress ?? "unknown";
}
