/** Three projects: fast pure-logic tests, tests against the real servers, and multi-node cluster tests. */
const transform = { "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2023" } }] };
const common = { testEnvironment: "node", transform, moduleFileExtensions: ["ts", "js", "json"] };
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
