/** REST routes of the orgs service (see docs/orgs.md). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { views } from "../../../src/orgs/views";
import { views as userViews } from "../../../src/users/views";
import { SIWE_PROOF_401 } from "./users";

const tag = "orgs";
const ROLE = { 403: ["INSUFFICIENT_ROLE"] };

export function orgsRoutes(): RouteSpec[] {
	return [
		{
			method: "POST",
			path: "/orgs",
			action: "orgs.create",
			response: views.create,
			errors: { 409: ["ORG_LIMIT"] },
			auth: "required",
			status: 201,
			summary: "Create an organisation (you are its owner)",
			tag
		},
		{
			method: "GET",
			path: "/orgs",
			action: "orgs.list",
			response: views.list,
			auth: "required",
			summary: "Organisations you are a member of, with your role",
			tag
		},
		{
			method: "GET",
			path: "/orgs/:id",
			action: "orgs.get",
			response: views.get,
			auth: "required",
			summary: "One organisation (members only; 404 otherwise)",
			tag
		},
		{
			method: "PATCH",
			path: "/orgs/:id",
			action: "orgs.update",
			response: views.update,
			errors: { ...ROLE },
			auth: "required",
			summary: "Rename, or set the organisation's monthly spend cap (owner, admin)",
			tag
		},
		{
			method: "GET",
			path: "/orgs/:id/members",
			action: "orgs.members",
			response: views.members,
			auth: "required",
			summary: "Members, roles and monthly caps",
			tag
		},
		{
			method: "PATCH",
			path: "/orgs/:id/members/:userId",
			action: "orgs.updateMember",
			response: views.updateMember,
			errors: { 403: ["INSUFFICIENT_ROLE", "OWNER_REQUIRED"], 409: ["LAST_OWNER"] },
			auth: "required",
			summary: "Change a member's role or monthly cap (owner, admin; owners only for owners)",
			tag
		},
		{
			method: "DELETE",
			path: "/orgs/:id/members/:userId",
			action: "orgs.removeMember",
			response: views.removeMember,
			errors: { 403: ["INSUFFICIENT_ROLE", "OWNER_REQUIRED"], 409: ["LAST_OWNER"] },
			auth: "required",
			summary: "Remove a member, or leave (your own user id); the last owner cannot leave",
			tag
		},
		{
			method: "POST",
			path: "/orgs/:id/invitations",
			action: "orgs.invite",
			response: views.invite,
			errors: { ...ROLE, 409: ["INVITATION_LIMIT"] },
			auth: "required",
			status: 201,
			rateLimit: { points: 30, durationS: 3600, by: "user" },
			summary: "Invite an address (the single-use token goes by e-mail only)",
			tag
		},
		{
			method: "POST",
			path: "/orgs/:id/keys",
			action: "users.createOrgApiKey",
			response: userViews.createOrgApiKey,
			errors: {
				403: ["INSUFFICIENT_ROLE", "SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"],
				409: ["API_KEY_LIMIT"]
			},
			auth: "required",
			status: 201,
			summary:
				"Create an organisation API key (owner, admin; acts as you within the organisation; the secret is shown once)",
			tag
		},
		{
			method: "GET",
			path: "/orgs/:id/keys",
			action: "users.listOrgApiKeys",
			response: userViews.listOrgApiKeys,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "The organisation's live API keys (owners and admins see all, others their own; never secrets)",
			tag
		},
		{
			method: "DELETE",
			path: "/orgs/:id/keys/:keyId",
			action: "users.revokeOrgApiKey",
			response: userViews.revokeOrgApiKey,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "Revoke an organisation API key (owner, admin; others their own)",
			tag
		},
		{
			method: "POST",
			path: "/orgs/:id/wallets",
			action: "users.linkOrgWallet",
			response: userViews.linkOrgWallet,
			errors: {
				401: [...SIWE_PROOF_401],
				403: ["INSUFFICIENT_ROLE", "SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"],
				409: ["WALLET_TAKEN", "WALLET_LIMIT"],
				422: ["SIWE_INVALID_MESSAGE"]
			},
			auth: "required",
			status: 201,
			summary:
				"Link a wallet to the organisation with a SIWE proof (owner, admin): its stake counts for the organisation's tier; it is not a way to sign in",
			tag
		},
		{
			method: "GET",
			path: "/orgs/:id/wallets",
			action: "users.listOrgWallets",
			response: userViews.listOrgWallets,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "The organisation's wallets (members)",
			tag
		},
		{
			method: "DELETE",
			path: "/orgs/:id/wallets/:address",
			action: "users.unlinkOrgWallet",
			response: userViews.unlinkOrgWallet,
			errors: { 403: ["INSUFFICIENT_ROLE", "SESSION_REQUIRED"] },
			auth: "required",
			summary: "Unlink a wallet from the organisation (owner, admin); its stake no longer counts",
			tag
		},
		{
			method: "POST",
			path: "/invitations/accept",
			action: "orgs.acceptInvitation",
			response: views.accept,
			errors: { 401: ["INVALID_TOKEN"], 409: ["MEMBER_LIMIT"] },
			auth: "required",
			rateLimit: { points: 30, durationS: 600, by: "user" },
			summary: "Accept an invitation (signed in with the invited, verified address)",
			tag
		}
	];
}
