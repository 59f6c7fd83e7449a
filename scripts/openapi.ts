/**
 * Writes the OpenAPI document the gateway serves at /api/openapi.json, without starting anything:
 * the routes from their declarations, each action's params from its service schema (and mixins).
 *   node -r @swc-node/register scripts/openapi.ts [out.json]   (stdout without a file)
 */
import fs from "node:fs";
import type { ServiceSchema } from "moleculer";
import { SERVICE_MODULES } from "../app/services";
import { allRoutes } from "../services/api/routes";
import { buildOpenApi } from "../src/http/openapi";
import { compatOpenApi } from "../src/compat/openapi";

type Params = Record<string, unknown>;

function actionParams(schema: ServiceSchema, into: Map<string, Params>, name = schema.name): void {
	for (const mixin of ([] as ServiceSchema[]).concat((schema.mixins as ServiceSchema[] | undefined) ?? []))
		actionParams(mixin, into, name);
	for (const [action, def] of Object.entries(schema.actions ?? {}))
		if (def && typeof def === "object" && "params" in def) into.set(`${name}.${action}`, def.params as Params);
}

export function offlineDocument(): Record<string, unknown> {
	const params = new Map<string, Params>();
	for (const load of Object.values(SERVICE_MODULES)) actionParams(load(), params);
	return buildOpenApi({
		routes: allRoutes(),
		actionParams: a => params.get(a),
		basePath: "/api/v1",
		version: "1.0.0",
		serverUrl: "/",
		extra: compatOpenApi()
	});
}

if (require.main === module) {
	const json = `${JSON.stringify(offlineDocument(), null, 2)}\n`;
	if (process.argv[2]) fs.writeFileSync(process.argv[2], json);
	else process.stdout.write(json);
}
