// Validates Kubernetes objects against the API schemas shipped by the kubernetes-models package.
// kubernetes-models is ES modules only and Jest runs tests as CommonJS, so manifests.test.ts runs this
// file in a child Node process: a JSON array of objects on stdin, a JSON array of results on stdout,
// one per object: { kind, name, errors: string[] }.
import { readFileSync } from "node:fs";

const docs = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const doc of docs) {
	const name = doc?.metadata?.name ?? "";
	const kind = doc?.kind ?? "";
	let model;
	try {
		// "v1" (the core group) and "<group>/<version>" map onto the package's module paths.
		const mod = await import(`kubernetes-models/${doc.apiVersion}/${kind}`);
		model = mod[kind];
	} catch (err) {
		results.push({ kind, name, errors: [`no schema for ${doc?.apiVersion} ${kind}: ${err.message}`] });
		continue;
	}
	try {
		new model(doc).validate();
		results.push({ kind, name, errors: [] });
	} catch (err) {
		const details = Array.isArray(err.details) ? err.details : [];
		const errors = details.length ? details.map(d => `${d.instancePath || "/"} ${d.message}${d.params ? ` ${JSON.stringify(d.params)}` : ""}`) : [String(err.message ?? err)];
		results.push({ kind, name, errors });
	}
}
process.stdout.write(JSON.stringify(results));
