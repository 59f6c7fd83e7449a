// ESLint flat config: typescript-eslint's recommended rules, import-cycle detection, the layering
// rule, and Prettier's formatting rules switched off (Prettier formats; ESLint checks what a formatter
// cannot). import-x/no-cycle skips type-only imports by design, so `npm run lint` also runs dpdm over
// the whole tree, which follows type-only imports too: a type-only circle still ties two modules'
// designs together.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";
import prettier from "eslint-config-prettier";
import globals from "globals";

export default tseslint.config(
	{
		ignores: [
			"node_modules/",
			".tools/",
			"dist/",
			".data/",
			"coverage/",
			"bench/results/",
			"artifacts/",
			"contracts/build/",
			"context/",
			"clients/**/dist/"
		]
	},
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		plugins: { "import-x": importX },
		languageOptions: {
			ecmaVersion: 2023,
			sourceType: "module",
			globals: { ...globals.node, ...globals.jest }
		},
		settings: {
			"import-x/extensions": [".ts", ".js", ".json"],
			"import-x/resolver-next": [importX.createNodeResolver({ extensions: [".ts", ".js", ".json", ".d.ts"] })]
		},
		rules: {
			"import-x/no-cycle": ["error", { ignoreExternal: true, allowUnsafeDynamicCyclicDependency: false }],
			"import-x/no-self-import": "error",
			// Layering: bin -> app (node wiring) -> services, mixins -> src (domain, runtime, contracts).
			"import-x/no-restricted-paths": [
				"error",
				{
					zones: [
						{
							target: "./src",
							from: ["./services", "./mixins", "./app", "./bin", "./moleculer.config.ts"],
							message:
								"src/ sits below services/, mixins/ and the node wiring; move the shared piece into src/."
						},
						{
							target: ["./services", "./mixins"],
							from: ["./app", "./bin"],
							message: "services and mixins do not know how a node is wired."
						}
					]
				}
			],
			"@typescript-eslint/no-unused-vars": [
				"error",
				{ argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }
			]
		}
	},
	{
		// Tests and benchmarks read untyped JSON bodies; `any` there is the honest type.
		files: ["test/**/*.ts", "bench/**/*.ts"],
		rules: { "@typescript-eslint/no-explicit-any": "off" }
	},
	{
		files: ["**/*.js", "**/*.cjs"],
		languageOptions: { sourceType: "commonjs" },
		rules: { "@typescript-eslint/no-require-imports": "off" }
	},
	prettier
);
