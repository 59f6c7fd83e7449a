/**
 * A real, certified OpenID Provider (panva's oidc-provider) for the single sign-on tests, run as a
 * child process (it is an ES module with ES-module dependencies). Usage:
 *   node oidc-provider.mjs <port> <redirect_uri> <authorization code TTL seconds>
 * Prints "ready <issuer>" when listening.
 *
 * The login step is automatic: the account is the authorization request's `login_hint`, written
 * `<name>~<email>~<1|0 email_verified>` (the test appends it to the authorization URL it was given);
 * that whole string is the account's `sub`.
 */
import Provider from "oidc-provider";

const [port, redirectUri, codeTtl] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
	clients: [
		{
			client_id: "forge",
			client_secret: "forge-test-secret-0123456789abcdef",
			redirect_uris: [redirectUri],
			grant_types: ["authorization_code"],
			response_types: ["code"],
			token_endpoint_auth_method: "client_secret_basic"
		}
	],
	pkce: { required: () => true },
	ttl: { AuthorizationCode: Number(codeTtl) },
	claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
	findAccount(_ctx, id) {
		const [name, email, verified] = id.split("~");
		return {
			accountId: id,
			claims: () => ({ sub: id, email, email_verified: verified === "1", name: `Test ${name}` })
		};
	},
	interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
	features: { devInteractions: { enabled: false } },
	cookies: { keys: ["oidc-test-cookie-key"] }
});

provider.use(async (ctx, next) => {
	const m = /^\/interaction\/([^/]+)$/.exec(ctx.path);
	if (!m) return next();
	const details = await provider.interactionDetails(ctx.req, ctx.res);
	const accountId = String(details.params.login_hint ?? "");
	if (!accountId.includes("~")) {
		ctx.status = 400;
		ctx.body = "login_hint <sub>~<email>~<1|0> is required";
		return;
	}
	const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
	grant.addOIDCScope(String(details.params.scope));
	const grantId = await grant.save();
	const returnTo = await provider.interactionResult(
		ctx.req,
		ctx.res,
		{ login: { accountId }, consent: { grantId } },
		{ mergeWithLastSubmission: false }
	);
	ctx.status = 303;
	ctx.redirect(returnTo);
});

provider.listen(Number(port), "127.0.0.1", () => console.log(`ready ${issuer}`));
