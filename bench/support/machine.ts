import os from "node:os";

export function machine(): string {
	const cpu = os.cpus()[0]?.model ?? "unknown CPU";
	return `${cpu.replace(/\s+/g, " ").trim()}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}
