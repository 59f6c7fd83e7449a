/** Three projects: fast pure-logic tests, tests against the real servers, and multi-node cluster tests. */
// Packages that ship ES modules only (openid-client and its dependencies; the Vercel AI SDK and
// its parts): Jest's CommonJS runtime gets them compiled.
const ESM_ONLY = [
	"openid-client",
	"oauth4webapi",
	"jose",
	"ai",
	"@ai-sdk",
	"eventsource-parser",
	"@standard-schema",
	"@vercel/oidc",
	"@workflow",
	"zod"
];
const transform = {
	"^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2023" } }],
	[`node_modules/(${ESM_ONLY.join("|")})/.+\\.js$`]: [
		"@swc/jest",
		{ jsc: { parser: { syntax: "ecmascript" }, target: "es2023" }, module: { type: "commonjs" } }
	]
};
const common = {
	testEnvironment: "node",
	transform,
	transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY.join("|")})/)`],
	moduleFileExtensions: ["ts", "js", "json"]
};
module.exports = {
	// Hooks start real servers (dev chain, nodes); Jest applies only the top-level timeout to them.
	testTimeout: 60000,
	projects: [
		{ ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
		{
			...common,
			displayName: "integration",
			testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
			// Every response from /api/v1 is checked against the OpenAPI document (test/support/contract.ts).
			setupFilesAfterEnv: ["<rootDir>/test/support/validate-responses.ts"],
			testTimeout: 60000
		},
		{
			...common,
			displayName: "cluster",
			testMatch: ["<rootDir>/test/cluster/**/*.test.ts"],
			setupFilesAfterEnv: ["<rootDir>/test/support/validate-responses.ts"],
			testTimeout: 120000
		}
	]
};
