/** The ai service's answers over HTTP (response schemas of the REST contract; src/http/schema.ts). */
import { Type } from "@sinclair/typebox";
import { Str, Count, Num, Nullable, List, Named, Url } from "../http/schema";

export const Model = Named("Model", {
	id: Str(200),
	provider: Str(64),
	group: Str(64),
	description: Str(2000),
	dev: Type.Boolean(),
	contextWindow: Count(),
	maxOutputTokens: Count(),
	prices: Type.Object({ unit: Str(64), input: Num(0), output: Num(0) }),
	tiers: List(Str(32), 32),
	available: Type.Boolean(),
	allowed: Type.Optional(Type.Boolean({ description: "Present for a signed-in caller or ?tier=" }))
});

export const DeploymentHealth = Named("DeploymentHealth", {
	id: Str(200),
	model: Str(200),
	provider: Str(64),
	baseUrl: Nullable(Url()),
	weight: Num(0),
	circuit: Str(32),
	inflight: Count(),
	consecutiveFailures: Count(),
	availableAt: Nullable(Count("Epoch ms until which the deployment is skipped")),
	successes: Count(),
	failures: Count(),
	lastError: Nullable(Str(2000))
});

export const views = {
	models: Type.Object({ tier: Nullable(Str(32)), devProvider: Type.Boolean(), models: List(Model, 1000) }),
	deployments: Type.Object({ nodeID: Str(256), deployments: List(DeploymentHealth, 1000) })
};
