/** Credentials and ids for the fuzzer, made through the API itself (a user with a project, an admin). */
import { uniqueId } from "./env";
import type { FuzzCredentials } from "./fuzz";
import { signUp } from "./sign-up";

const PASSWORD = "correct horse battery staple";

async function post(baseUrl: string, path: string, body: unknown, token?: string) {
	const res = await fetch(`${baseUrl}/api/v1${path}`, {
		method: "POST",
		headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
		body: JSON.stringify(body)
	});
	const json = (await res.json()) as Record<string, any>; // checked below
	if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
	return json;
}

/** `promote(userId)` makes a user admin (SQL on whichever database the platform uses). */
export async function fuzzCredentials(
	baseUrl: string,
	promote: (userId: string) => Promise<void>
): Promise<FuzzCredentials> {
	const register = (tag: string) => signUp(baseUrl, `${uniqueId(tag)}@example.com`, PASSWORD);
	const user = await register("fuzz");
	const project = await post(baseUrl, "/projects", { name: "fuzzed" }, user.accessToken);
	await post(
		baseUrl,
		`/projects/${project.id}/versions`,
		{
			baseVersion: 0,
			message: "seed",
			changes: [{ op: "add", path: "src/a.txt", content: "hello" }]
		},
		user.accessToken
	);
	const admin = await register("fuzzadmin");
	await promote(admin.userId);
	const login = await post(baseUrl, "/auth/login", { email: admin.email, password: PASSWORD });
	return {
		user: { Authorization: `Bearer ${user.accessToken}` },
		admin: { Authorization: `Bearer ${login.accessToken}` },
		projectId: project.id,
		otherUserId: user.userId
	};
}
