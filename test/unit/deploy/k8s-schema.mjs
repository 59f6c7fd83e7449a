// Checks Kubernetes objects with the kubernetes-models package, two ways:
// - errors: its validator, built from the Kubernetes OpenAPI schemas (types, enums, required fields);
// - fieldErrors: its TypeScript types, through the compiler's excess-property check. The API schemas
//   allow unknown fields, so a misspelt one (nodeTaintPolicy) passes the validator, while the API
//   server's strict field validation (kubectl's default) refuses the object.
// kubernetes-models is ES modules only and Jest runs tests as CommonJS, so manifests.test.ts runs this
// file in a child Node process: a JSON array of objects on stdin, a JSON array of results on stdout,
// one per object: { kind, name, errors: string[], fieldErrors: string[] }.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const docs = JSON.parse(readFileSync(0, "utf8"));
const here = path.dirname(fileURLToPath(import.meta.url));

// "v1" (the core group) and "<group>/<version>" map onto the package's module paths.
const modulePath = doc => `kubernetes-models/${doc.apiVersion}/${doc.kind}`;

const results = [];
for (const doc of docs) {
	const name = doc?.metadata?.name ?? "";
	const kind = doc?.kind ?? "";
	let model;
	try {
		model = (await import(modulePath(doc)))[kind];
	} catch (err) {
		results.push({ kind, name, errors: [`no schema for ${doc?.apiVersion} ${kind}: ${err.message}`], fieldErrors: [] });
		continue;
	}
	try {
		new model(doc).validate();
		results.push({ kind, name, errors: [], fieldErrors: [] });
	} catch (err) {
		results.push({ kind, name, errors: [String(err.message ?? err)], fieldErrors: [] });
	}
}

// One virtual module per object that has a model: `const d: I<Kind> = <the object>;`, type-checked in memory.
const files = new Map();
docs.forEach((doc, i) => {
	if (results[i].errors.some(e => e.startsWith("no schema"))) return;
	const file = path.join(here, `__k8s_object_${i}.mts`);
	files.set(file, { i, text: `import type { I${doc.kind} as T } from "${modulePath(doc)}";\nexport const d: T = ${JSON.stringify(doc, null, 1)};\n` });
});
if (files.size) {
	const options = {
		strict: true,
		noEmit: true,
		skipLibCheck: true,
		types: [],
		target: ts.ScriptTarget.ES2022,
		module: ts.ModuleKind.NodeNext,
		moduleResolution: ts.ModuleResolutionKind.NodeNext
	};
	const host = ts.createCompilerHost(options);
	const getSourceFile = host.getSourceFile.bind(host);
	const fileExists = host.fileExists.bind(host);
	host.getSourceFile = (f, lang, ...rest) => (files.has(f) ? ts.createSourceFile(f, files.get(f).text, lang) : getSourceFile(f, lang, ...rest));
	host.fileExists = f => files.has(f) || fileExists(f);
	const program = ts.createProgram([...files.keys()], options, host);
	for (const d of ts.getPreEmitDiagnostics(program)) {
		const entry = d.file && files.get(d.file.fileName);
		const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
		if (entry) results[entry.i].fieldErrors.push(message);
		else for (const r of results) r.fieldErrors.push(message);
	}
}
process.stdout.write(JSON.stringify(results));
