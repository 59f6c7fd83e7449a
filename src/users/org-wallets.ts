/**
 * Organisation wallets (issue 19: an organisation's tier from its plan or its stake; docs/orgs.md
 * "Wallets and stake"). An owner or admin links a wallet with a SIWE proof, as one links a wallet to
 * an account, from a signed-in session (and the second factor's step-up when it is on). The wallet
 * then belongs to the organisation: users.walletOwner answers the organisation's payer `org:<uuid>`,
 * so payments attributes the wallet's indexed stake to it and the organisation's tier counts it. It is
 * not a way to sign in, and no account can link it while the organisation holds it. Any member sees
 * the organisation's wallets; owners and admins link and unlink them.
 */
import { getAddress } from "viem";
import { Conflict, Forbidden, NotFound } from "../errors";
import { orgPayerId } from "../payments/payer";
import type { SecondFactor } from "./second-factor";
import type { SiweInput, SiweProofs } from "./siwe-proof";
import type { OrgWalletRow, UsersStore } from "./store";
import { ORG_KEY_MANAGERS, roleInOrg } from "./org-api-keys";

export interface OrgWalletsDeps {
	store: Pick<UsersStore, "linkOrgWallet" | "unlinkOrgWallet" | "orgWallets">;
	proofs: Pick<SiweProofs, "verify">;
	secondFactor: Pick<SecondFactor, "stepUp">;
	/** The user's role in the organisation (orgs.roleOf), null when not a member. */
	orgRole(orgId: string, userId: string): Promise<string | null>;
	maxWallets: number;
	/** A wallet changed hands: a hint to payments to re-attribute its stake. */
	announce(address: string): void;
}

export function orgWalletView(w: OrgWalletRow) {
	return {
		address: getAddress(w.address),
		chainId: Number(w.chain_id),
		kind: w.kind,
		linkedAt: new Date(w.linked_at).toISOString(),
		linkedBy: w.linked_by,
		payerId: orgPayerId(w.org_id)
	};
}

export class OrgWallets {
	constructor(private readonly d: OrgWalletsDeps) {}

	private roleIn(orgId: string, userId: string): Promise<string> {
		return roleInOrg(this.d.orgRole, orgId, userId);
	}

	private async manager(orgId: string, userId: string) {
		if (!ORG_KEY_MANAGERS.has(await this.roleIn(orgId, userId)))
			throw Forbidden(
				"Only the organisation's owners and admins link and unlink its wallets",
				"INSUFFICIENT_ROLE"
			);
	}

	async link(userId: string, orgId: string, input: SiweInput & { mfaCode?: string }) {
		const d = this.d;
		await this.manager(orgId, userId);
		await d.secondFactor.stepUp(userId, input.mfaCode);
		const proof = await d.proofs.verify(input);
		const r = await d.store.linkOrgWallet(orgId, userId, proof.address, proof.chainId, proof.kind, d.maxWallets);
		if (r.result === "taken")
			throw Conflict("This wallet is linked to an account or to another organisation", "WALLET_TAKEN");
		if (r.result === "limit")
			throw Conflict(`An organisation may link at most ${d.maxWallets} wallets`, "WALLET_LIMIT");
		if (r.result === "linked") d.announce(proof.address);
		return { ...orgWalletView(r.wallet!), alreadyLinked: r.result === "already" };
	}

	async list(userId: string, orgId: string) {
		await this.roleIn(orgId, userId);
		return { items: (await this.d.store.orgWallets(orgId)).map(orgWalletView) };
	}

	async unlink(userId: string, orgId: string, rawAddress: string) {
		await this.manager(orgId, userId);
		const address = rawAddress.toLowerCase();
		if (!(await this.d.store.unlinkOrgWallet(orgId, address, userId))) throw NotFound("Wallet");
		this.d.announce(address);
		return { address: getAddress(address), unlinked: true as const };
	}
}
