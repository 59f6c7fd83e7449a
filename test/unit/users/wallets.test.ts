/**
 * Wallet unlink (src/users/wallets.ts with src/users/sign-in-methods.ts) over an in-memory account
 * whose transactions roll back on a throw: never the last way in, whatever the other ways are.
 */
import { DomainError } from "../../../src/errors";
import type { MethodLock, SignInMethods } from "../../../src/users/sign-in-methods";
import { Wallets, type WalletsDeps } from "../../../src/users/wallets";

const USER = "11111111-1111-4111-8111-111111111111";
const A = "0x00000000000000000000000000000000000000aa";
const B = "0x00000000000000000000000000000000000000bb";

interface Account {
	password: boolean;
	wallets: string[];
	passkeys: number;
	identities: number;
}

function setup(account: Account | null) {
	let state = account && structuredClone(account);
	const announced: string[] = [];
	const forgotten: string[] = [];
	const methods: MethodLock<"tx"> = {
		async transaction(fn) {
			const before = structuredClone(state);
			try {
				return await fn("tx");
			} catch (err) {
				state = before;
				throw err;
			}
		},
		async lockedMethods(_tx, userId): Promise<SignInMethods | null> {
			if (!state || userId !== USER) return null;
			return { ...state, wallets: state.wallets.length };
		}
	};
	const unused = () => Promise.reject(new Error("not used by unlink"));
	const deps: WalletsDeps<"tx"> = {
		store: {
			userForWalletSignIn: unused,
			userById: unused,
			touchWalletSignIn: unused,
			touchLogin: unused,
			audit: unused,
			linkWallet: unused
		},
		methods,
		async deleteWallet(tx, userId, address) {
			expect(tx).toBe("tx");
			if (!state || userId !== USER || !state.wallets.includes(address)) return false;
			state.wallets = state.wallets.filter(w => w !== address);
			return true;
		},
		proofs: { verify: unused },
		secondFactor: { enabled: unused, stepUp: unused },
		mfaChallenge: unused,
		sessions: { issue: unused },
		maxWallets: 5,
		forget: async userId => void forgotten.push(userId),
		announce: address => announced.push(address),
		offerGrant: unused
	};
	return { wallets: new Wallets(deps), state: () => state, announced, forgotten };
}

const refusal = (p: Promise<unknown>) =>
	p.then(
		() => null,
		(e: DomainError) => ({ status: e.status, code: e.code })
	);

describe("wallet unlink", () => {
	test("the only way in is refused with 409 LAST_SIGN_IN_METHOD, and the wallet stays", async () => {
		const s = setup({ password: false, wallets: [A], passkeys: 0, identities: 0 });
		expect(await refusal(s.wallets.unlink(USER, A))).toEqual({ status: 409, code: "LAST_SIGN_IN_METHOD" });
		expect(s.state()!.wallets).toEqual([A]);
		expect(s.announced).toEqual([]);
	});

	test.each([
		["a password", { password: true, wallets: [A], passkeys: 0, identities: 0 }],
		["another wallet", { password: false, wallets: [A, B], passkeys: 0, identities: 0 }],
		["a passkey", { password: false, wallets: [A], passkeys: 1, identities: 0 }],
		["an SSO identity", { password: false, wallets: [A], passkeys: 0, identities: 1 }]
	])("with %s left, the wallet goes (the payments hint and the cache drop follow)", async (_what, account) => {
		const s = setup(account);
		await expect(s.wallets.unlink(USER, A.toUpperCase().replace("0X", "0x"))).resolves.toEqual({
			address: "0x00000000000000000000000000000000000000AA",
			unlinked: true
		});
		expect(s.state()!.wallets).not.toContain(A);
		expect(s.announced).toEqual([A]);
		expect(s.forgotten).toEqual([USER]);
	});

	test("a wallet the user does not hold is a 404, even when it would be the last method", async () => {
		const s = setup({ password: false, wallets: [A], passkeys: 0, identities: 0 });
		expect(await refusal(s.wallets.unlink(USER, B))).toEqual({ status: 404, code: "NOT_FOUND" });
		expect(s.state()!.wallets).toEqual([A]);
	});

	test("an unknown user is a 404", async () => {
		const s = setup(null);
		expect(await refusal(s.wallets.unlink(USER, A))).toEqual({ status: 404, code: "NOT_FOUND" });
	});
});

test("signing in with a wallet an organisation holds is 403 ORG_WALLET, and no session is made", async () => {
	const issued: string[] = [];
	const wallets = new Wallets<"tx">({
		store: {
			userForWalletSignIn: async () => "org_wallet",
			userById: () => Promise.reject(new Error("no account is read")),
			touchWalletSignIn: () => Promise.reject(new Error("nothing is touched")),
			touchLogin: () => Promise.reject(new Error("nothing is touched")),
			audit: () => Promise.reject(new Error("nothing is audited")),
			linkWallet: () => Promise.reject(new Error("not used"))
		},
		methods: { transaction: fn => fn("tx"), lockedMethods: async () => null },
		deleteWallet: async () => false,
		proofs: { verify: async () => ({ address: A, chainId: 1, kind: "eoa" }) as never },
		secondFactor: { enabled: async () => false, stepUp: async () => undefined },
		mfaChallenge: () => Promise.reject(new Error("not used")),
		sessions: { issue: async user => (issued.push(user.id), {}) as never },
		maxWallets: 5,
		forget: async () => undefined,
		announce: () => undefined,
		offerGrant: () => Promise.reject(new Error("no grant"))
	});
	expect(await refusal(wallets.signIn({ message: "m", signature: "0x00", nonceToken: "n" }, {}))).toEqual({
		status: 403,
		code: "ORG_WALLET"
	});
	expect(issued).toEqual([]);
});
