/**
 * People and organisations for integration tests over the gateway: an account (its e-mail address
 * verified through the dev outbox's link, unless asked not to), an organisation, an e-mailed
 * invitation and its acceptance, and a member who joined through them. `call` is a client that takes
 * full paths (`/api/v1/...`) and has the gateway's `baseUrl` (test/integration/users/http.ts).
 */
import { eventually, uniqueId } from "./env";
import { signUp } from "./sign-up";

type Call<R extends { status: number; json: any }> = ((
	method: string,
	path: string,
	init?: { body?: unknown; token?: string }
) => Promise<R>) & { readonly baseUrl: string };

export interface Person {
	email: string;
	id: string;
	token: string;
}

export function orgPeople<R extends { status: number; json: any }>(
	call: Call<R>,
	opts: { prefix: string; password: string }
) {
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

	/** Follows the verification link mailed to `p`. */
	async function verifyEmail(p: Person): Promise<void> {
		const token = await outboxToken(p.email, "/verify-email");
		expect((await call("POST", "/api/v1/auth/email/verify", { body: { token } })).status).toBe(200);
	}

	/** A signed-up account, its e-mail address verified unless `verified: false`. */
	async function person(o: { verified?: boolean } = {}): Promise<Person> {
		const email = `${uniqueId(opts.prefix)}@example.com`;
		const u = await signUp(call, email, opts.password);
		const p = { email, id: u.userId, token: u.accessToken };
		if (o.verified !== false) await verifyEmail(p);
		return p;
	}

	async function newOrg(owner: Person, name = "Acme"): Promise<string> {
		const r = await call("POST", "/api/v1/orgs", { token: owner.token, body: { name } });
		expect(r.status).toBe(201);
		return r.json.id as string;
	}

	/** `by` invites `email` as `role`; the token, which only the e-mail carries, from the dev outbox. */
	async function invite(orgId: string, by: Person, email: string, role = "member"): Promise<string> {
		const r = await call("POST", `/api/v1/orgs/${orgId}/invitations`, { token: by.token, body: { email, role } });
		expect(r.status).toBe(201);
		expect(JSON.stringify(r.json)).not.toContain("ffi_"); // the answer never carries the token
		return outboxToken(email, "/invitations/accept");
	}

	const accept = (p: Person, token: string): Promise<R> =>
		call("POST", "/api/v1/invitations/accept", { token: p.token, body: { token } });

	/** `p` invited by `owner` with `role`, and accepted through the e-mailed token. */
	async function join(orgId: string, owner: Person, p: Person, role = "member"): Promise<void> {
		expect((await accept(p, await invite(orgId, owner, p.email, role))).status).toBe(200);
	}

	return { outboxToken, verifyEmail, person, newOrg, invite, accept, join };
}
