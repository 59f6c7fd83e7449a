/**
 * Operator REPL commands for users (moleculer-repl custom commands): find a user, show their tier
 * and sessions, revoke their sessions. They call the users service over the transporter, as an
 * operator identity, so a REPL node needs no local services.
 */
import type { ServiceBroker } from "moleculer";
import type { AuthUser } from "../auth/user";
import type { ReplCommand } from "../repl/command";
import { isUuid } from "../kit/uuid";

/** Who the REPL acts as: read access to the admin listing (operators may look, not change). */
const REPL_OPERATOR: AuthUser = { id: "repl", role: "operator", scopes: ["*"] };

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

interface ListedUser {
	id: string;
	email: string | null;
	role: string;
	disabled: boolean;
	wallets?: string[];
	createdAt: string;
}

async function findUsers(broker: ServiceBroker, query: string, limit = 20): Promise<ListedUser[]> {
	const page = (await broker.call(
		"users.adminListUsers",
		{ q: query, limit },
		{ meta: { user: REPL_OPERATOR } }
	)) as { items: ListedUser[] };
	return page.items;
}

/** A user id, an e-mail or a wallet address → the one user it names (or a printed explanation). */
export async function resolveUser(broker: ServiceBroker, ref: string): Promise<string | null> {
	const asId: unknown = ref;
	if (isUuid(asId)) return asId.toLowerCase();
	const wanted = ref.trim().toLowerCase();
	const exact = (await findUsers(broker, wanted)).filter(
		u => u.email === wanted || u.wallets?.some(w => w.toLowerCase() === wanted)
	);
	if (exact.length === 1) return exact[0].id;
	console.log(exact.length ? `'${ref}' matches ${exact.length} users; use the id` : `no user is '${ref}'`);
	return null;
}

export const usersReplCommands: ReplCommand[] = [
	{
		command: "users-find <query>",
		description: "Find users by e-mail prefix, user id or wallet address (prefix)",
		async action(broker, args) {
			const users = await findUsers(broker, String(args.query));
			if (!users.length) return console.log(`no user matches '${String(args.query)}'`);
			print(
				users.map(u => ({
					id: u.id,
					email: u.email,
					role: u.role,
					disabled: u.disabled,
					wallets: u.wallets,
					createdAt: u.createdAt
				}))
			);
		}
	},
	{
		command: "users-tier <user>",
		description:
			"A user's tier and the facts behind it (plan, stake, admin override); <user> is an id, e-mail or wallet",
		async action(broker, args) {
			const userId = await resolveUser(broker, String(args.user));
			if (userId) print(await broker.call("users.getTier", { userId }));
		}
	},
	{
		command: "users-sessions <user>",
		description: "A user's sessions (live ones; --all includes ended ones)",
		options: [{ option: "-a, --all", description: "include revoked and expired sessions" }],
		async action(broker, args) {
			const userId = await resolveUser(broker, String(args.user));
			if (userId)
				print(await broker.call("users.userSessions", { userId, includeEnded: args.options?.all === true }));
		}
	},
	{
		command: "users-revoke-sessions <user>",
		description: "End every session of a user at once (their access and refresh tokens stop working)",
		async action(broker, args) {
			const userId = await resolveUser(broker, String(args.user));
			if (userId) print(await broker.call("users.revokeUserSessions", { userId, reason: "operator" }));
		}
	},
	{
		command: "users-2fa-reset <user>",
		description:
			"Remove a user's two-factor authentication (TOTP and backup codes) after their identity was checked; audited, the user is told",
		async action(broker, args) {
			const userId = await resolveUser(broker, String(args.user));
			if (!userId) return;
			const r = (await broker.call("users.resetSecondFactor", { userId, actor: "operator:repl" })) as {
				removed: boolean;
			};
			print({ userId, removed: r.removed, note: r.removed ? "2FA removed" : "the user had no 2FA" });
		}
	}
];
