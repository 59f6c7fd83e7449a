/** A TCP proxy the test can cut and restore, to make a real server (RabbitMQ, NATS) unreachable for a while. */
import net from "node:net";

export interface TcpProxy {
	port: number;
	url(scheme: string, auth?: string): string;
	/** Refuses new connections and drops the open ones. */
	cut(): Promise<void>;
	restore(): Promise<void>;
	close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
	const sockets = new Set<net.Socket>();
	let server: net.Server | null = null;
	let port = 0;
	const listen = () =>
		new Promise<void>((resolve, reject) => {
			server = net.createServer(client => {
				const upstream = net.connect(target);
				sockets.add(client);
				sockets.add(upstream);
				const drop = () => {
					client.destroy();
					upstream.destroy();
					sockets.delete(client);
					sockets.delete(upstream);
				};
				client.on("error", drop).on("close", drop);
				upstream.on("error", drop).on("close", drop);
				client.pipe(upstream);
				upstream.pipe(client);
			});
			server.once("error", reject);
			server.listen(port, "127.0.0.1", () => {
				port = (server!.address() as net.AddressInfo).port;
				resolve();
			});
		});
	await listen();
	const stop = () =>
		new Promise<void>(resolve => {
			for (const s of sockets) s.destroy();
			sockets.clear();
			if (!server) return resolve();
			server.close(() => resolve());
			server = null;
		});
	return {
		get port() {
			return port;
		},
		url: (scheme, auth) => `${scheme}://${auth ? auth + "@" : ""}127.0.0.1:${port}`,
		cut: stop,
		restore: listen,
		close: stop
	};
}
