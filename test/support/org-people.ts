/**
 * People and organisations for integration tests over the gateway: a verified account (the token
 * from the dev outbox's verification link), an organisation, and a member who joined through an
 * e-mailed invitation. `call` is a client that takes full paths (`/api/v1/...`) and has the
 * gateway's `baseUrl` (test/integration/users/http.ts).
 */
import { eventually, uniqueId } from "./env";
import { signUp } from "./sign-up";

type Call = ((
	method: string,
	path: string,
	init?: { body?: unknown; token?: string }
) => Promise<{ status: number; json: any }>) & { readonly baseUrl: string };

export interface Person {
	email: string;
	id: string;
	token: string;
}

export function orgPeople(call: Call, opts: { prefix: string; password: string }) {
	/** The token of the newest link to `path` in mail sent to `to`. */
	async function outboxToken(to: string, path: string): Promise<string> {
		let token = "";
		await eventually(async () => {
			const box = await call("GET", `/api/v1/dev/outbox?to=${encodeURIComponent(to)}`);
			const links: string[] = (box.json?.items ?? box.json ?? []).flatMap((m: { links: string[] }) => m.links);
			const hit = links.find(l => new URL(l).pathname === path);
			if (hit) token = new URL(hit).searchParams.get("token")!;
			return !!hit;
		}, 15_000);
		return token;
	}

	/** A signed-up account with its e-mail address verified. */
	async function person(): Promise<Person> {
		const email = `${uniqueId(opts.prefix)}@example.com`;
		const u = await signUp(call, email, opts.password);
		const p = { email, id: u.userId, token: u.accessToken };
		const token = await outboxToken(p.email, "/verify-email");
		expect((await call("POST", "/api/v1/auth/email/verify", { body: { token } })).status).toBe(200);
		return p;
	}

	async function newOrg(owner: Person, name: string): Promise<string> {
		const r = await call("POST", "/api/v1/orgs", { token: owner.token, body: { name } });
		expect(r.status).toBe(201);
		return r.json.id as string;
	}

	/** `p` invited by `owner` with `role`, and accepted through the e-mailed token. */
	async function join(orgId: string, owner: Person, p: Person, role: string): Promise<void> {
		const r = await call("POST", `/api/v1/orgs/${orgId}/invitations`, {
			token: owner.token,
			body: { email: p.email, role }
		});
		expect(r.status).toBe(201);
		const token = await outboxToken(p.email, "/invitations/accept");
		expect((await call("POST", "/api/v1/invitations/accept", { token: p.token, body: { token } })).status).toBe(
			200
		);
	}

	return { outboxToken, person, newOrg, join };
}
