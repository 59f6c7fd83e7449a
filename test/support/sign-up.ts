/**
 * A new password account and its first session, the way a client gets them: POST /auth/register
 * (202 "pending" by default; 201 with tokens where SIGNUP_REVEALS_TAKEN=true), then POST /auth/login.
 * Tests that check register's own answers call the route themselves.
 */
export interface SignedUp {
	email: string;
	userId: string;
	accessToken: string;
	refreshToken: string;
	sessionId: string;
	/** The sign-in answer's `user`. */
	user: { id: string; email: string | null; emailVerified: boolean; role: string } & Record<string, unknown>;
}

export interface SignUpOptions {
	displayName?: string;
	/** Sent with both requests (e.g. `x-forwarded-for`). */
	headers?: Record<string, string>;
}

/** `at`: the gateway's origin, or anything with it as `baseUrl` (a test node, an httpClient); routes under /api/v1. */
export async function signUp(
	at: string | { readonly baseUrl: string },
	email: string,
	password: string,
	opts: SignUpOptions = {}
): Promise<SignedUp> {
	const baseUrl = typeof at === "string" ? at : at.baseUrl;
	const post = async (path: string, body: object) => {
		const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/api/v1${path}`, {
			method: "POST",
			headers: { "content-type": "application/json", ...opts.headers },
			body: JSON.stringify(body)
		});
		const text = await res.text();
		let json: unknown;
		try {
			json = JSON.parse(text);
		} catch {
			json = undefined;
		}
		return { status: res.status, json: json as Record<string, unknown> & Partial<SignedUp>, text };
	};
	const reg = await post("/auth/register", {
		email,
		password,
		...(opts.displayName !== undefined ? { displayName: opts.displayName } : {})
	});
	let session = reg;
	if (reg.status === 202) session = await post("/auth/login", { email, password });
	else if (reg.status !== 201) throw new Error(`sign-up of ${email}: register answered ${reg.status} ${reg.text}`);
	if (session.status !== 200 && session.status !== 201)
		throw new Error(`sign-up of ${email}: login answered ${session.status} ${session.text}`);
	const j = session.json;
	if (typeof j.accessToken !== "string" || !j.user)
		throw new Error(`sign-up of ${email}: no session in ${session.text}`);
	return {
		email,
		userId: j.user.id,
		accessToken: j.accessToken,
		refreshToken: j.refreshToken as string,
		sessionId: j.sessionId as string,
		user: j.user
	};
}
