/**
 * Offline checks of the deployment files (Dockerfile, docker-compose.yml, k8s/*.yaml, .env.example)
 * against the code they deploy: service names, health routes and ports, the variables the config
 * reads and requires, secrets, autoscaling targets and the one-image rule. No Docker or cluster needed.
 */
import fs from "node:fs";
import path from "node:path";
import { CORE_SCHEMA, load, loadAll, mergeTag } from "js-yaml";
import { ALL_SERVICES, ConfigError, loadConfig } from "../../../src/config";
import { brokerOptions } from "../../../moleculer.config";
import { HEALTH_ROUTES, healthTarget } from "../../../bin/healthcheck";

const ROOT = path.resolve(__dirname, "../../..");
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), "utf8");

/** The services the roles are written for (some are still being added to ALL_SERVICES). */
const FINAL_SERVICES = ["api", "users", "projects", "payments", "tasks", "ai"];
/** Without these, src/config.ts refuses to start a node whose TRANSPORTER is set. */
const CLUSTER_REQUIRED = ["TRANSPORTER", "DATABASE_URL", "REDIS_URL", "AMQP_URL", "JWT_KEYS"];
const SECRET_NAMED = /(SECRET|PASSWORD|TOKEN|_KEY|_KEYS|PRIVATE|MNEMONIC|CREDENTIAL)/;
/** Variables that carry credentials even though their names do not say so. */
const SECRET_VARS = new Set(["DATABASE_URL", "REDIS_URL", "AMQP_URL", "JWT_KEYS"]);
const isSecretVar = (name: string) => SECRET_VARS.has(name) || SECRET_NAMED.test(name);
const HEALTH_PATHS: string[] = Object.values(HEALTH_ROUTES);
const TEST_JWT_KEYS = `t1:${"x".repeat(40)}`;

// ---------- the variables the config reads ----------

/** src/config.ts, each domain's src/<domain>/config.ts, and the sections it reads from <topic>-config.ts. */
const CONFIG_FILES = [
	"src/config.ts",
	...fs
		.readdirSync(path.join(ROOT, "src"), { withFileTypes: true })
		.filter(d => d.isDirectory())
		.flatMap(d =>
			fs
				.readdirSync(path.join(ROOT, "src", d.name))
				.filter(f => f === "config.ts" || f.endsWith("-config.ts"))
				.map(f => `src/${d.name}/${f}`)
		)
];

/** Every variable named in a reader call (`str("X"`, `r.int("X"`, ...) or read as `env.X` / `env["X"]`. */
function scanConfigVariables(): Set<string> {
	const patterns = [
		/\b(?:str|int|optUrl|bool|oneOf|optStr)\s*(?:<[^>()]*>)?\(\s*["'`]([A-Z][A-Z0-9_]*)["'`]/g,
		/\benv\.([A-Z][A-Z0-9_]*)\b/g,
		/\benv\[\s*["'`]([A-Z][A-Z0-9_]*)["'`]\s*\]/g
	];
	const vars = new Set<string>();
	for (const file of CONFIG_FILES) {
		const src = read(file);
		for (const re of patterns) for (const m of src.matchAll(re)) vars.add(m[1]);
	}
	return vars;
}

/** The variables loadConfig actually touches for a given environment (a Proxy records each read). */
function observedReads(env: Record<string, string>): Set<string> {
	const seen = new Set<string>();
	const proxy = new Proxy(env, {
		get(target, key) {
			if (typeof key === "string" && /^[A-Z][A-Z0-9_]*$/.test(key)) seen.add(key);
			return typeof key === "string" ? target[key] : undefined;
		}
	});
	try {
		loadConfig(proxy);
	} catch (err) {
		if (!(err instanceof ConfigError)) throw err;
	}
	return seen;
}

const CLUSTER_ENV = { TRANSPORTER: "nats://n:4222", DATABASE_URL: "postgres://d/x", REDIS_URL: "redis://r", AMQP_URL: "amqp://a", JWT_KEYS: TEST_JWT_KEYS };
const SCANNED_VARS = scanConfigVariables();
/**
 * Names built at run time (e.g. `${prefix}_WINDOW_S`) or passed through a section's own helper
 * (e.g. address(r, "FORGE_TOKEN_ADDRESS")) escape the scan; the recorded reads catch them.
 */
const CONFIG_VARS = new Set([...SCANNED_VARS, ...observedReads({}), ...observedReads(CLUSTER_ENV)]);

// ---------- which services exist ----------

const SERVICE_FILES = fs
	.readdirSync(path.join(ROOT, "services"))
	.map(f => /^(.+)\.service\.ts$/.exec(f)?.[1])
	.filter((n): n is string => !!n && n !== "ops"); // ops runs on every node; SERVICES never names it
const KNOWN = new Set<string>([...ALL_SERVICES, ...SERVICE_FILES]);
/** Final-set services that have neither a service file nor an ALL_SERVICES entry yet. */
const PENDING = FINAL_SERVICES.filter(s => !KNOWN.has(s));

function parseServices(raw: string | undefined): string[] {
	const v = (raw ?? "").trim();
	if (v === "*") return [...ALL_SERVICES];
	return v.split(",").map(s => s.trim()).filter(Boolean);
}

// ---------- a role, whatever the platform ----------

interface Probe {
	kind: string;
	path: string;
	port: number;
}

interface Role {
	where: string;
	name: string;
	image: string;
	/** Variable name -> value; secret-sourced variables get a test value, see secretVars. */
	env: Record<string, string>;
	/** Variables whose value comes from a Secret (k8s secretKeyRef). */
	secretVars: Set<string>;
	/** Variables given as a literal value in the manifest itself. */
	literalVars: Set<string>;
	services: string[];
	probes: Probe[];
	metrics: Array<{ port: number; path: string }>;
}

/** Ports on which a node with this environment serves /health/* (services/api.service.ts, services/ops.service.ts). */
function healthPorts(env: Record<string, string>): number[] {
	const ports: number[] = [];
	if (parseServices(env.SERVICES).includes("api")) ports.push(Number(env.PORT || 3000));
	if (Number(env.HEALTH_PORT || 0) > 0) ports.push(Number(env.HEALTH_PORT));
	return ports;
}

/** Ports on which it serves /metrics: METRICS_PORT; the gateway's PORT in embedded mode only (no TRANSPORTER). */
function metricsPorts(env: Record<string, string>): number[] {
	const ports: number[] = [];
	if (parseServices(env.SERVICES).includes("api") && !env.TRANSPORTER) ports.push(Number(env.PORT || 3000));
	if (Number(env.METRICS_PORT || 0) > 0) ports.push(Number(env.METRICS_PORT));
	return ports;
}

/** loadConfig on a role's environment; the only tolerated problem is naming a pending service. */
function configProblems(env: Record<string, string>): string[] {
	try {
		loadConfig(env);
		return [];
	} catch (err) {
		if (!(err instanceof ConfigError)) throw err;
		return err.problems.filter(p => {
			const m = /^SERVICES names unknown services: (.+?) \(known/.exec(p);
			// loadConfig knows only ALL_SERVICES: a final-set service not registered there yet is tolerated.
			return !(m && m[1].split(", ").every(s => FINAL_SERVICES.includes(s) && !(ALL_SERVICES as readonly string[]).includes(s)));
		});
	}
}

// ---------- docker-compose.yml ----------

const YAML_OPTS = { schema: CORE_SCHEMA.withTags(mergeTag) };

/** Compose-style interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$. */
function interpolate(value: string, vars: Record<string, string | undefined>): string {
	return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g, (whole, name: string | undefined, colon, op, arg: string) => {
		if (whole === "$$") return "$";
		const v = vars[name!];
		const missing = colon ? v == null || v === "" : v == null;
		if (!op) return v ?? "";
		if (op === "-") return missing ? arg : v!;
		if (missing) throw new Error(`required variable ${name} is missing: ${arg}`);
		return v!;
	});
}

interface ComposeService {
	image?: string;
	build?: unknown;
	command?: unknown;
	environment?: Record<string, string | number | boolean | null>;
	healthcheck?: { test?: string[] | string };
	depends_on?: Record<string, { condition?: string }> | string[];
	deploy?: { replicas?: number };
	stop_grace_period?: string;
	ports?: string[];
}
interface ComposeFile {
	services: Record<string, ComposeService>;
}

const COMPOSE_TEXT = read("docker-compose.yml");
const compose = load(COMPOSE_TEXT, YAML_OPTS) as ComposeFile;
const COMPOSE_VARS = { JWT_KEYS: TEST_JWT_KEYS };
const composeApps = Object.entries(compose.services).filter(([, s]) => s.build != null);

function composeRole(name: string, s: ComposeService): Role {
	const env: Record<string, string> = {};
	for (const [k, v] of Object.entries(s.environment ?? {})) env[k] = interpolate(String(v ?? ""), COMPOSE_VARS);
	const test = Array.isArray(s.healthcheck?.test) ? s.healthcheck!.test : [String(s.healthcheck?.test ?? "")];
	const probes: Probe[] = [];
	for (const arg of test) {
		const m = /https?:\/\/[^\s/'"]+(\/[^\s'"]*)?/.exec(arg);
		if (!m) continue;
		const u = new URL(m[0]);
		probes.push({ kind: "healthcheck", path: u.pathname, port: Number(u.port || 80) });
	}
	return {
		where: `compose:${name}`,
		name,
		image: s.image ?? "",
		env,
		secretVars: new Set(),
		literalVars: new Set(Object.keys(env)),
		services: parseServices(env.SERVICES),
		probes,
		metrics: []
	};
}

const COMPOSE_ROLES = composeApps.map(([n, s]) => composeRole(n, s));

// ---------- k8s/*.yaml ----------

interface K8sDoc {
	apiVersion: string;
	kind: string;
	metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
	// The manifests' bodies differ per kind; each check below narrows what it reads.
	[key: string]: unknown;
}
interface EnvVar {
	name: string;
	value?: string;
	valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface HttpProbe {
	httpGet?: { path: string; port: number | string };
}
interface Container {
	name: string;
	image: string;
	ports?: Array<{ name?: string; containerPort: number }>;
	env?: EnvVar[];
	envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
	resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
	startupProbe?: HttpProbe;
	livenessProbe?: HttpProbe;
	readinessProbe?: HttpProbe;
	lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
	securityContext?: { allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean; runAsUser?: number };
}
interface PodSpec {
	terminationGracePeriodSeconds?: number;
	securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
	containers: Container[];
}
interface Deployment extends K8sDoc {
	spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } };
}

const K8S_FILES = fs.readdirSync(path.join(ROOT, "k8s")).filter(f => /\.ya?ml$/.test(f)).sort();
const K8S_BY_FILE = new Map<string, K8sDoc[]>(
	K8S_FILES.map(f => [f, (loadAll(read(`k8s/${f}`), YAML_OPTS) as Array<K8sDoc | null>).filter((d): d is K8sDoc => d != null)])
);
const K8S: K8sDoc[] = [...K8S_BY_FILE.values()].flat().filter(d => d.kind !== "Kustomization");
const ofKind = <T extends K8sDoc>(kind: string) => K8S.filter(d => d.kind === kind) as T[];
const deployments = ofKind<Deployment>("Deployment");
const configMaps = ofKind<K8sDoc & { data?: Record<string, string> }>("ConfigMap");
const secrets = ofKind<K8sDoc & { stringData?: Record<string, string>; data?: Record<string, string> }>("Secret");

/** Values used instead of the Secret template's placeholders when running loadConfig. */
const SECRET_TEST_VALUES: Record<string, string> = {
	DATABASE_URL: "postgres://forgefluid:pw@postgres:5432/forgefluid",
	REDIS_URL: "redis://:pw@redis:6379",
	AMQP_URL: "amqp://forgefluid:pw@rabbitmq:5672",
	JWT_KEYS: TEST_JWT_KEYS
};

function secretValue(name: string, key: string, useTemplate: boolean): string | undefined {
	const s = secrets.find(x => x.metadata.name === name);
	const v = s?.stringData?.[key] ?? (s?.data?.[key] != null ? Buffer.from(s.data[key], "base64").toString() : undefined);
	return useTemplate ? v : (SECRET_TEST_VALUES[key] ?? v);
}

function containerPort(c: Container, port: number | string): number {
	if (typeof port === "number") return port;
	const p = c.ports?.find(x => x.name === port);
	if (!p) throw new Error(`container ${c.name} has no port named ${port}`);
	return p.containerPort;
}

function k8sEnv(d: Deployment, useTemplateSecrets = false) {
	const c = d.spec.template.spec.containers[0];
	const env: Record<string, string> = {};
	const secretVars = new Set<string>();
	const literalVars = new Set<string>();
	for (const from of c.envFrom ?? []) {
		if (from.configMapRef) {
			const cm = configMaps.find(x => x.metadata.name === from.configMapRef!.name);
			if (!cm) throw new Error(`${d.metadata.name}: envFrom names a missing ConfigMap ${from.configMapRef.name}`);
			for (const [k, v] of Object.entries(cm.data ?? {})) {
				env[k] = String(v);
				literalVars.add(k);
			}
		}
		if (from.secretRef) throw new Error(`${d.metadata.name}: use secretKeyRef per variable, not envFrom secretRef (keys would be unchecked)`);
	}
	for (const e of c.env ?? []) {
		if (e.value != null) {
			env[e.name] = String(e.value);
			literalVars.add(e.name);
		} else if (e.valueFrom?.secretKeyRef) {
			const v = secretValue(e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key, useTemplateSecrets);
			if (v == null) throw new Error(`${d.metadata.name}: ${e.name} references missing secret key ${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
			env[e.name] = v;
			secretVars.add(e.name);
		} else if (e.valueFrom?.fieldRef) {
			env[e.name] = "pod-0";
		} else if (e.valueFrom?.configMapKeyRef) {
			const cm = configMaps.find(x => x.metadata.name === e.valueFrom!.configMapKeyRef!.name);
			env[e.name] = String(cm?.data?.[e.valueFrom.configMapKeyRef.key] ?? "");
			literalVars.add(e.name);
		}
	}
	return { env, secretVars, literalVars };
}

function k8sRole(d: Deployment): Role {
	const c = d.spec.template.spec.containers[0];
	const { env, secretVars, literalVars } = k8sEnv(d);
	const probes: Probe[] = [];
	for (const kind of ["startupProbe", "livenessProbe", "readinessProbe"] as const) {
		const p = c[kind];
		if (!p) continue;
		if (!p.httpGet) throw new Error(`${d.metadata.name}: ${kind} must be an httpGet on a health route`);
		probes.push({ kind, path: p.httpGet.path, port: containerPort(c, p.httpGet.port) });
	}
	const ann = d.spec.template.metadata.annotations ?? {};
	const metrics = ann["prometheus.io/scrape"] === "true" ? [{ port: Number(ann["prometheus.io/port"]), path: ann["prometheus.io/path"] ?? "/metrics" }] : [];
	return { where: `k8s:${d.metadata.name}`, name: d.metadata.name, image: c.image, env, secretVars, literalVars, services: parseServices(env.SERVICES), probes, metrics };
}

const K8S_ROLES = deployments.map(k8sRole);
const ALL_ROLES = [...COMPOSE_ROLES, ...K8S_ROLES];

// ---------- tests ----------

describe("what the deployment files are checked against", () => {
	test("the variables are found both by scanning the config sources and by recording loadConfig's reads", () => {
		for (const v of ["SERVICES", "PORT", "HEALTH_PORT", "METRICS_PORT", "NODE_ID", ...CLUSTER_REQUIRED]) {
			expect(SCANNED_VARS).toContain(v);
			expect(observedReads(CLUSTER_ENV)).toContain(v);
		}
	});

	test("there are roles on both platforms", () => {
		expect(COMPOSE_ROLES.map(r => r.name).sort()).toEqual(["ai", "core", "gateway", "tasks"]);
		expect(K8S_ROLES.map(r => r.name).sort()).toEqual(["forgefluid-ai", "forgefluid-core", "forgefluid-gateway", "forgefluid-tasks"]);
	});

	test("the healthcheck script targets HEALTH_PORT on workers and PORT on the gateway", () => {
		expect(healthTarget({ HEALTH_PORT: "3001", PORT: "3000" })).toBe("http://127.0.0.1:3001/health/ready");
		expect(healthTarget({ PORT: "8080" })).toBe("http://127.0.0.1:8080/health/ready");
		expect(healthTarget({ HEALTH_PORT: "0" })).toBe("http://127.0.0.1:3000/health/ready");
		expect(healthTarget({}, "live")).toBe("http://127.0.0.1:3000/health/live");
	});
});

describe("service names", () => {
	test(`every role names only real services (not yet in ALL_SERVICES or services/: ${PENDING.join(", ") || "none"})`, () => {
		for (const r of ALL_ROLES) {
			expect({ where: r.where, services: r.services.length }).not.toEqual({ where: r.where, services: 0 });
			// A name must exist (ALL_SERVICES or a services/<name>.service.ts), or be a final-set service still being added.
			const unknown = r.services.filter(s => !KNOWN.has(s) && !PENDING.includes(s));
			expect({ where: r.where, unknown }).toEqual({ where: r.where, unknown: [] });
			expect(new Set(r.services).size).toBe(r.services.length);
		}
	});

	test.each([
		["compose", COMPOSE_ROLES],
		["k8s", K8S_ROLES]
	])("%s hosts every service of the final set, of ALL_SERVICES and of services/", (_where, roles) => {
		const hosted = new Set(roles.flatMap(r => r.services));
		const required = new Set([...FINAL_SERVICES, ...ALL_SERVICES, ...SERVICE_FILES]);
		expect([...required].filter(s => !hosted.has(s))).toEqual([]);
	});

	test("each service is hosted by exactly one role per platform (a role is a unit of scaling)", () => {
		for (const roles of [COMPOSE_ROLES, K8S_ROLES]) {
			const all = roles.flatMap(r => r.services);
			expect(all.filter((s, i) => all.indexOf(s) !== i)).toEqual([]);
		}
	});
});

describe("health checks and metrics", () => {
	test.each(ALL_ROLES.map(r => [r.where, r] as const))("%s probes a served health route on the port it is served on", (_w, r) => {
		expect(r.probes.length).toBeGreaterThan(0);
		const ports = healthPorts(r.env);
		for (const p of r.probes) {
			expect(HEALTH_PATHS).toContain(p.path);
			expect({ probe: p.kind, port: p.port, served: ports.includes(p.port) }).toEqual({ probe: p.kind, port: p.port, served: true });
		}
	});

	test.each(K8S_ROLES.map(r => [r.where, r] as const))("%s: liveness is /health/live, readiness /health/ready", (_w, r) => {
		// Readiness reports dependencies; using it for liveness would restart every pod when Redis blips.
		expect(r.probes.find(p => p.kind === "livenessProbe")?.path).toBe(HEALTH_ROUTES.live);
		expect(r.probes.find(p => p.kind === "readinessProbe")?.path).toBe(HEALTH_ROUTES.ready);
	});

	test.each(K8S_ROLES.map(r => [r.where, r] as const))("%s is scraped on a port that serves /metrics", (_w, r) => {
		expect(r.metrics.length).toBe(1);
		for (const m of r.metrics) {
			expect(m.path).toBe("/metrics");
			expect(metricsPorts(r.env)).toContain(m.port);
		}
	});

	test("the gateway Service routes port 3000 to the pods' PORT and only that; it is not a scrape target", () => {
		const svc = ofKind<K8sDoc & { spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: number | string }> } }>("Service");
		const gw = svc.find(s => s.metadata.name === "forgefluid-gateway");
		expect(gw).toBeDefined();
		const pods = deployments.filter(d => Object.entries(gw!.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
		expect(pods.map(d => d.metadata.name)).toEqual(["forgefluid-gateway"]);
		const role = K8S_ROLES.find(r => r.name === "forgefluid-gateway")!;
		expect(gw!.spec.ports[0].port).toBe(3000);
		expect(containerPort(pods[0].spec.template.spec.containers[0], gw!.spec.ports[0].targetPort)).toBe(Number(role.env.PORT || 3000));
		expect(gw!.spec.ports.map(p => p.port)).toEqual([3000]);
		// Scraping a Service would reach a different pod each time; pods are scraped on METRICS_PORT.
		expect(gw!.metadata.annotations?.["prometheus.io/scrape"]).toBeUndefined();
		expect(metricsPorts(role.env)).not.toContain(Number(role.env.PORT || 3000));
	});
});

describe("environment", () => {
	test.each(ALL_ROLES.map(r => [r.where, r] as const))("%s sets only variables the config reads, and all that cluster mode requires", (_w, r) => {
		expect(Object.keys(r.env).filter(k => !CONFIG_VARS.has(k))).toEqual([]);
		expect(CLUSTER_REQUIRED.filter(k => !(r.env[k] ?? "").trim())).toEqual([]);
	});

	test.each(ALL_ROLES.map(r => [r.where, r] as const))("%s: loadConfig accepts the role's environment", (_w, r) => {
		expect(configProblems(r.env)).toEqual([]);
		// And it is cluster mode, not an embedded node that happens to validate.
		expect(r.env.TRANSPORTER).toMatch(/^nats:\/\//);
	});

	test("compose refuses to start without JWT_KEYS (no usable default signing key)", () => {
		const gw = compose.services.gateway.environment!;
		expect(() => interpolate(String(gw.JWT_KEYS), {})).toThrow(/JWT_KEYS/);
	});

	test("the k8s Secret template's placeholders do not pass validation as they are", () => {
		const d = deployments.find(x => x.metadata.name === "forgefluid-gateway")!;
		const { env } = k8sEnv(d, true);
		expect(() => loadConfig(env)).toThrow(/JWT_KEYS/);
	});

	test.each(K8S_ROLES.map(r => [r.where, r] as const))("%s takes credentials from secretKeyRef, never literal", (_w, r) => {
		expect([...r.literalVars].filter(isSecretVar)).toEqual([]);
		for (const k of r.literalVars) expect({ k, credentials: /:\/\/[^/\s:@]*:[^/\s@]+@/.test(r.env[k]) }).toEqual({ k, credentials: false });
		expect([...SECRET_VARS].filter(k => !r.secretVars.has(k))).toEqual([]);
	});

	test("the ConfigMap holds no credentials", () => {
		for (const cm of configMaps) expect(Object.keys(cm.data ?? {}).filter(isSecretVar)).toEqual([]);
	});

	test.each(K8S_ROLES.map(r => [r.where, r] as const))("%s gets a unique NODE_ID per pod", (_w, r) => {
		const d = deployments.find(x => x.metadata.name === r.name)!;
		const e = d.spec.template.spec.containers[0].env?.find(x => x.name === "NODE_ID");
		expect(e?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");
	});
});

describe("compose", () => {
	test("app roles run one image, wait for healthy infrastructure, and stop gracefully", () => {
		const shutdownS = brokerOptions(loadConfig({})).tracking!.shutdownTimeout! / 1000;
		expect(new Set(COMPOSE_ROLES.map(r => r.image)).size).toBe(1);
		for (const [name, s] of composeApps) {
			const deps = s.depends_on as Record<string, { condition?: string }>;
			expect({ name, deps: Object.keys(deps).sort() }).toEqual({ name, deps: ["nats", "postgres", "rabbitmq", "redis"] });
			for (const d of Object.values(deps)) expect(d.condition).toBe("service_healthy");
			expect(Number(/^(\d+)s$/.exec(s.stop_grace_period ?? "")?.[1] ?? 10)).toBeGreaterThan(shutdownS);
		}
	});

	test("infrastructure services each have a healthcheck; NATS runs with JetStream", () => {
		for (const name of ["postgres", "redis", "nats", "rabbitmq"]) expect(compose.services[name]?.healthcheck?.test).toBeDefined();
		expect(compose.services.postgres.image).toMatch(/^postgres:16/);
		expect(compose.services.redis.image).toMatch(/^redis:7/);
		expect(compose.services.nats.image).toMatch(/^nats:2/);
		expect(compose.services.rabbitmq.image).toMatch(/^rabbitmq:3-management/);
		// JetStream and the payload limit come from the mounted deploy/nats.conf.
		const nats = compose.services.nats as unknown as { command: string[]; volumes: string[] };
		const conf = nats.command[nats.command.indexOf("-c") + 1];
		const mount = nats.volumes.find(v => v.endsWith(`:${conf}:ro`));
		expect(mount).toBeDefined();
		const text = fs.readFileSync(path.join(ROOT, mount!.split(":")[0]), "utf8");
		expect(text).toMatch(/^jetstream\s*\{/m);
		expect(text).toMatch(/^max_payload:\s*64MB/m);
	});

	test("the ai role runs two replicas; only the gateway publishes a port", () => {
		expect(compose.services.ai.deploy?.replicas).toBe(2);
		expect(composeApps.filter(([, s]) => s.ports?.length).map(([n]) => n)).toEqual(["gateway"]);
	});
});

describe("k8s", () => {
	const shutdownMs = brokerOptions(loadConfig({})).tracking!.shutdownTimeout!;

	test("app Deployments run one image", () => {
		expect(new Set(K8S_ROLES.map(r => r.image)).size).toBe(1);
		const kustomization = load(read("k8s/kustomization.yaml"), YAML_OPTS) as { images?: Array<{ name: string }> };
		for (const img of kustomization.images ?? []) expect(K8S_ROLES[0].image.startsWith(`${img.name}:`)).toBe(true);
	});

	test.each(deployments.map(d => [d.metadata.name, d] as const))("%s: selector, grace period, resources, non-root", (_n, d) => {
		const pod = d.spec.template.spec;
		expect(pod.containers).toHaveLength(1);
		const c = pod.containers[0];
		for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) expect(d.spec.template.metadata.labels[k]).toBe(v);
		const preStopS = c.lifecycle?.preStop?.sleep?.seconds ?? Number(c.lifecycle?.preStop?.exec?.command?.[0] === "sleep" ? c.lifecycle.preStop.exec.command[1] : 0);
		expect((pod.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(shutdownMs + preStopS * 1000);
		for (const kind of ["requests", "limits"] as const) {
			expect(c.resources?.[kind]?.cpu).toBeDefined();
			expect(c.resources?.[kind]?.memory).toBeDefined();
		}
		expect(pod.securityContext?.runAsNonRoot ?? c.securityContext?.runAsNonRoot).toBe(true);
		expect(pod.securityContext?.runAsUser ?? c.securityContext?.runAsUser).toBeGreaterThan(0);
		expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
	});

	test("HorizontalPodAutoscalers target existing Deployments and cover the ai and tasks roles", () => {
		const hpas = ofKind<K8sDoc & { apiVersion: string; spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number; metrics?: Array<{ type: string; resource?: { name: string } }> } }>("HorizontalPodAutoscaler");
		const scaled = new Set<string>();
		for (const h of hpas) {
			expect(h.apiVersion).toBe("autoscaling/v2");
			const target = deployments.find(d => h.spec.scaleTargetRef.kind === "Deployment" && d.metadata.name === h.spec.scaleTargetRef.name);
			expect({ hpa: h.metadata.name, target: !!target }).toEqual({ hpa: h.metadata.name, target: true });
			expect(h.spec.minReplicas).toBeLessThanOrEqual(h.spec.maxReplicas);
			// Utilization is relative to the request: without one the HPA cannot compute it.
			if (h.spec.metrics?.some(m => m.type === "Resource" && m.resource?.name === "cpu"))
				expect(target!.spec.template.spec.containers[0].resources?.requests?.cpu).toBeDefined();
			for (const s of K8S_ROLES.find(r => r.name === target!.metadata.name)!.services) scaled.add(s);
		}
		expect(scaled.has("ai")).toBe(true);
		expect(scaled.has("tasks")).toBe(true);
	});

	test("Deployments an HPA scales leave replicas unset (a re-apply would reset the HPA's count)", () => {
		const hpas = ofKind<K8sDoc & { spec: { scaleTargetRef: { kind: string; name: string } } }>("HorizontalPodAutoscaler");
		expect(hpas.length).toBeGreaterThan(0);
		for (const h of hpas) {
			const d = deployments.find(x => x.metadata.name === h.spec.scaleTargetRef.name);
			expect([h.spec.scaleTargetRef.name, d?.spec.replicas]).toEqual([h.spec.scaleTargetRef.name, undefined]);
		}
	});

	test("the gateway PodDisruptionBudget selects the gateway pods and leaves room to drain", () => {
		const pdbs = ofKind<K8sDoc & { spec: { minAvailable?: number; selector: { matchLabels: Record<string, string> } } }>("PodDisruptionBudget");
		const gw = deployments.find(d => d.metadata.name === "forgefluid-gateway")!;
		const pdb = pdbs.find(p => Object.entries(p.spec.selector.matchLabels).every(([k, v]) => gw.spec.template.metadata.labels[k] === v));
		expect(pdb).toBeDefined();
		expect(pdb!.spec.minAvailable).toBeGreaterThanOrEqual(1);
		expect(pdb!.spec.minAvailable!).toBeLessThan(gw.spec.replicas ?? 1);
	});

	test("everything lives in the forgefluid namespace; kustomization lists every manifest except the Secret template", () => {
		for (const d of K8S.filter(x => x.kind !== "Namespace")) expect({ n: d.metadata.name, ns: d.metadata.namespace }).toEqual({ n: d.metadata.name, ns: "forgefluid" });
		const k = load(read("k8s/kustomization.yaml"), YAML_OPTS) as { resources: string[] };
		const expected = K8S_FILES.filter(f => f !== "kustomization.yaml" && !f.includes(".template."));
		expect([...k.resources].sort()).toEqual(expected);
		for (const f of K8S_FILES.filter(x => x.includes(".template."))) expect(K8S_BY_FILE.get(f)!.every(d => d.kind === "Secret")).toBe(true);
	});
});

describe("Dockerfile", () => {
	const text = read("Dockerfile");
	const lines = text.split("\n").filter(l => l.trim() && !l.trim().startsWith("#"));
	const stages = text.split(/^FROM /m).slice(1);
	const runtime = stages[stages.length - 1];

	test("both stages run the pinned Node major on a tag-pinned slim image", () => {
		const major = read(".node-version").trim().split(".")[0];
		const froms = lines.filter(l => l.startsWith("FROM "));
		expect(froms.length).toBeGreaterThanOrEqual(2);
		for (const f of froms) expect(f).toMatch(new RegExp(`^FROM node:${major}-bookworm-slim( AS \\w+)?$`));
	});

	test("the runtime stage: production, non-root, the served ports, the compiled entry point and healthcheck", () => {
		expect(runtime).toMatch(/^ENV NODE_ENV=production$/m);
		const user = /^USER (\S+)/m.exec(runtime)?.[1] ?? "root";
		expect(["root", "0", "0:0"]).not.toContain(user);
		const exposed = (/^EXPOSE (.+)$/m.exec(runtime)?.[1] ?? "").split(/\s+/).map(Number);
		for (const r of ALL_ROLES) for (const p of [...healthPorts(r.env), ...metricsPorts(r.env)]) expect(exposed).toContain(p);
		const build = JSON.parse(read("tsconfig.build.json")) as { compilerOptions?: { outDir?: string } };
		const base = JSON.parse(read("tsconfig.json")) as { compilerOptions: { outDir: string; rootDir: string } };
		const outDir = build.compilerOptions?.outDir ?? base.compilerOptions.outDir;
		const compiled = (src: string) => path.posix.join(outDir, path.posix.relative(base.compilerOptions.rootDir, src)).replace(/\.ts$/, ".js");
		const cmd = JSON.parse(/^CMD (\[.+\])$/m.exec(runtime)?.[1] ?? "[]") as string[];
		expect(cmd).toEqual(["node", compiled("bin/forgefluid.ts")]);
		expect(fs.existsSync(path.join(ROOT, "bin/forgefluid.ts"))).toBe(true);
		const hc = /^HEALTHCHECK .*CMD (\[.+\])$/m.exec(runtime)?.[1];
		expect(JSON.parse(hc ?? "[]")).toEqual(["node", compiled("bin/healthcheck.ts")]);
		for (const [, s] of composeApps) expect((s.healthcheck?.test as string[]).slice(1, 3)).toEqual(["node", compiled("bin/healthcheck.ts")]);
		expect(runtime).toMatch(/COPY --from=build \/app\/dist /);
		expect(runtime).not.toMatch(/COPY (?!--from)/);
	});

	test("the build stage compiles and prunes dev dependencies", () => {
		expect(stages[0]).toMatch(/RUN npm ci\b/);
		expect(stages[0]).toMatch(/npm run build/);
		expect(stages[0]).toMatch(/npm prune --omit=dev/);
	});

	test(".dockerignore keeps secrets and local state out, and nothing the build copies", () => {
		const ignored = read(".dockerignore").split("\n").map(l => l.trim()).filter(l => l && !l.startsWith("#") && !l.startsWith("!"));
		for (const must of ["node_modules", ".env", ".git", ".data", "dist"]) expect(ignored).toContain(must);
		const copied = [...stages[0].matchAll(/^COPY (?!--from)(.+?) \S+$/gm)].flatMap(m => m[1].split(/\s+/));
		for (const src of copied) {
			const hit = ignored.filter(p => src === p || src.startsWith(`${p}/`));
			expect({ src, hit }).toEqual({ src, hit: [] });
			expect(fs.existsSync(path.join(ROOT, src))).toBe(true);
		}
	});
});

describe(".env.example", () => {
	const text = read(".env.example");
	const listed = new Map([...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map(m => [m[1], m[2]]));
	const composeOnly = new Set([...COMPOSE_TEXT.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map(m => m[1]));

	test("lists every variable the config reads", () => {
		expect([...CONFIG_VARS].filter(v => !listed.has(v)).sort()).toEqual([]);
	});

	test("lists nothing the config or docker-compose.yml does not read", () => {
		expect([...listed.keys()].filter(v => !CONFIG_VARS.has(v) && !composeOnly.has(v))).toEqual([]);
	});

	test("its values, as they are, configure a valid embedded node", () => {
		const env = Object.fromEntries([...listed].filter(([k]) => CONFIG_VARS.has(k)));
		expect(configProblems(env)).toEqual([]);
		expect(env.TRANSPORTER ?? "").toBe("");
	});

	test("the values it lists are the code's defaults", () => {
		const env = Object.fromEntries([...listed].filter(([k]) => CONFIG_VARS.has(k)));
		expect(loadConfig(env)).toEqual(loadConfig({}));
	});
});
