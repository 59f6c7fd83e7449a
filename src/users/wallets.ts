/**
 * Wallets as a way in: signing in with a wallet (its first sign-in makes the account), linking one to
 * a signed-in account, and unlinking one, never the account's last way to sign in (a password, another
 * wallet, a passkey or an SSO identity; src/users/sign-in-methods.ts).
 */
import { getAddress } from "viem";
import { Conflict, Forbidden, NotFound } from "../errors";
import type { SecondFactor } from "./second-factor";
import type { ClientInfo, Sessions } from "./sessions";
import type { MfaChallenge } from "./sign-in";
import { removeUnlessLastWith, type MethodLock } from "./sign-in-methods";
import type { SiweInput, SiweProofs } from "./siwe-proof";
import type { UsersStore } from "./store";
import { publicUser, walletView } from "./views";

export interface WalletsDeps<Tx> {
	store: Pick<
		UsersStore,
		"userForWalletSignIn" | "userById" | "touchWalletSignIn" | "touchLogin" | "audit" | "linkWallet"
	>;
	/** Counts the user's sign-in methods under a lock, for unlinking. */
	methods: MethodLock<Tx>;
	/** Removes the user's wallet in `tx`; false when the user holds no such wallet. */
	deleteWallet(tx: Tx, userId: string, address: string): Promise<boolean>;
	proofs: Pick<SiweProofs, "verify">;
	secondFactor: Pick<SecondFactor, "enabled" | "stepUp">;
	mfaChallenge(userId: string, method: "siwe"): Promise<MfaChallenge>;
	sessions: Pick<Sessions, "issue">;
	maxWallets: number;
	/** Drops the user's cached profile and tier (a wallet's kind or holdings changed). */
	forget(userId: string): Promise<void>;
	/** A wallet changed hands: a hint to payments to re-attribute its stake. */
	announce(address: string): void;
	/** The welcome grant for a newly proven wallet. */
	offerGrant(userId: string, address: string, client: ClientInfo): Promise<void>;
}

export class Wallets<Tx> {
	constructor(private readonly d: WalletsDeps<Tx>) {}

	async signIn(input: SiweInput, client: ClientInfo) {
		const d = this.d;
		const proof = await d.proofs.verify(input);
		const account = await d.store.userForWalletSignIn(proof.address, proof.chainId, proof.kind);
		if (account === "org_wallet")
			throw Forbidden("This wallet belongs to an organisation: it is not a way to sign in", "ORG_WALLET");
		const { userId, created } = account;
		const user = await d.store.userById(userId);
		if (!user) throw new Error(`user ${userId} of wallet ${proof.address} not found`);
		if (user.disabled_at) throw Forbidden("This account is disabled", "ACCOUNT_DISABLED");
		await d.store.touchWalletSignIn(proof.address, proof.kind);
		if (await d.secondFactor.enabled(user.id)) return { ...(await d.mfaChallenge(user.id, "siwe")), created };
		await d.store.touchLogin(user.id);
		if (created) {
			await d.store.audit(undefined, user.id, user.id, "user.register", {
				method: "siwe",
				address: proof.address
			});
			d.announce(proof.address);
			await d.offerGrant(user.id, proof.address, client);
		} else await d.forget(user.id); // the wallet's kind may have changed (deployed since)
		return { ...(await d.sessions.issue(user, "siwe", client)), user: publicUser(user), created };
	}

	async link(userId: string, input: SiweInput & { mfaCode?: string }, client: ClientInfo) {
		const d = this.d;
		await d.secondFactor.stepUp(userId, input.mfaCode);
		const proof = await d.proofs.verify(input);
		const r = await d.store.linkWallet(userId, proof.address, proof.chainId, proof.kind, d.maxWallets);
		if (r.result === "taken") throw Conflict("This wallet is linked to another account", "WALLET_TAKEN");
		if (r.result === "limit") throw Conflict(`An account may link at most ${d.maxWallets} wallets`, "WALLET_LIMIT");
		await d.forget(userId);
		if (r.result !== "already") {
			d.announce(proof.address);
			await d.offerGrant(userId, proof.address, client);
		}
		return { ...walletView(r.wallet!), alreadyLinked: r.result === "already" };
	}

	async unlink(userId: string, rawAddress: string): Promise<{ address: string; unlinked: true }> {
		const address = rawAddress.toLowerCase();
		const r = await removeUnlessLastWith(this.d.methods, userId, tx => this.d.deleteWallet(tx, userId, address));
		if (r === "not_found") throw NotFound("Wallet");
		if (r === "last_method")
			throw Conflict("This wallet is the account's only way to sign in", "LAST_SIGN_IN_METHOD");
		await this.d.forget(userId);
		this.d.announce(address);
		return { address: getAddress(address), unlinked: true };
	}
}
