/**
 * The account messages, in text and HTML. Pure: values in, a message out. Every value that came
 * from a user (a display name, an address, a user agent) is escaped in the HTML part; links are
 * built by the caller from MAIL's APP_URL and carry one-time tokens in their query.
 */

export interface MailContent {
	subject: string;
	text: string;
	html: string;
}

export type AccountMail =
	| { kind: "verifyEmail"; link: string; expiresInS: number; change: boolean }
	| { kind: "resetPassword"; link: string; expiresInS: number }
	| { kind: "emailChanged"; newEmail: string }
	| { kind: "passwordChanged" }
	| { kind: "newSignIn"; method: string; ip: string | null; userAgent: string | null; at: string }
	| { kind: "twoFactorChanged"; change: "enabled" | "disabled" | "reset_by_operator" | "backup_code_used" }
	| { kind: "accountDeleted" }
	/** A sign-up was tried with this address, which already has an account (no link that signs in). */
	| { kind: "signUpAttempted"; resetLink: string }
	| {
			kind: "orgInvitation";
			orgName: string;
			role: string;
			inviter: string | null;
			link: string;
			expiresInS: number;
	  }
	/** A renewal failed (`billing.past_due`): the plan stays until `graceEndsAt`, then the tier drops. */
	| { kind: "billingPastDue"; planTier: string; graceEndsAt: string; orgName: string | null; link: string }
	/** An off-session top-up was refused (`billing.auto_topup.failed`): auto top-up is off until turned on again. */
	| { kind: "billingAutoTopUpFailed"; packId: string; reason: string; orgName: string | null; link: string }
	/** The available credit crossed under the payer's threshold (`billing.low_balance`). */
	| {
			kind: "billingLowBalance";
			thresholdCredits: string;
			availableCredits: string;
			orgName: string | null;
			link: string;
	  }
	/** A hold was refused by a monthly spend cap (`billing.cap_reached`), once per cap and month. */
	| {
			kind: "billingCapReached";
			scope: "member" | "key" | "payer";
			capCredits: string;
			/** YYYY-MM (UTC). */
			month: string;
			orgName: string | null;
			link: string;
	  };

const escapeHtml = (s: string) =>
	s.replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c as "&"]);

function duration(s: number): string {
	if (s % 86_400 === 0) return `${s / 86_400} day${s === 86_400 ? "" : "s"}`;
	if (s % 3600 === 0) return `${s / 3600} hour${s === 3600 ? "" : "s"}`;
	return `${Math.round(s / 60)} minutes`;
}

/** One layout for every message: paragraphs, an optional button, and the footer. */
function compose(subject: string, paragraphs: string[], action?: { label: string; link: string }): MailContent {
	const footer = "If this was not you, reply to this message or contact support.";
	const text = [
		...paragraphs,
		...(action ? [`${action.label}: ${action.link}`] : []),
		"",
		"-- ",
		`ForgeFluid. ${footer}`
	].join("\n\n");
	const html = [
		"<!doctype html>",
		`<html><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>`,
		'<body style="font-family:sans-serif;line-height:1.5">',
		...paragraphs.map(p => `<p>${escapeHtml(p)}</p>`),
		...(action
			? [
					`<p><a href="${escapeHtml(action.link)}" style="display:inline-block;padding:8px 16px;background:#2d5bd7;color:#fff;text-decoration:none;border-radius:4px">${escapeHtml(action.label)}</a></p>`,
					`<p style="font-size:small">Or open this link: ${escapeHtml(action.link)}</p>`
				]
			: []),
		`<hr><p style="font-size:small;color:#666">ForgeFluid. ${escapeHtml(footer)}</p>`,
		"</body></html>"
	].join("\n");
	return { subject, text, html };
}

export function renderAccountMail(mail: AccountMail): MailContent {
	switch (mail.kind) {
		case "verifyEmail":
			return compose(
				mail.change ? "Confirm your new e-mail address" : "Confirm your e-mail address",
				[
					mail.change
						? "You asked to use this address for your ForgeFluid account. Your account keeps its current address until you confirm."
						: "Welcome to ForgeFluid. Please confirm that this address is yours.",
					`The link works once and expires in ${duration(mail.expiresInS)}.`
				],
				{ label: "Confirm the address", link: mail.link }
			);
		case "resetPassword":
			return compose(
				"Reset your ForgeFluid password",
				[
					"Someone (hopefully you) asked to reset the password of the ForgeFluid account with this address.",
					`The link works once and expires in ${duration(mail.expiresInS)}. Resetting signs you out everywhere.`,
					"If you did not ask for this, ignore this message: your password stays as it is."
				],
				{ label: "Choose a new password", link: mail.link }
			);
		case "emailChanged":
			return compose("Your ForgeFluid e-mail address was changed", [
				`The e-mail address of your ForgeFluid account was changed to ${mail.newEmail}.`,
				"Messages about the account now go there; this address no longer signs in."
			]);
		case "passwordChanged":
			return compose("Your ForgeFluid password was changed", [
				"The password of your ForgeFluid account was changed, and every other session was signed out."
			]);
		case "newSignIn":
			return compose("New sign-in to your ForgeFluid account", [
				`Your account was signed in to at ${mail.at} (${mail.method}).`,
				`From: ${mail.ip ?? "an unknown address"}${mail.userAgent ? `, ${mail.userAgent}` : ""}.`
			]);
		case "twoFactorChanged": {
			const what = {
				enabled: "Two-factor authentication was turned on for your ForgeFluid account.",
				disabled: "Two-factor authentication was turned off for your ForgeFluid account.",
				reset_by_operator:
					"An operator removed the two-factor authentication of your ForgeFluid account at your request.",
				backup_code_used:
					"A backup code of your ForgeFluid account was used. Each code works once; create new ones when few are left."
			}[mail.change];
			return compose("Two-factor authentication changed", [what]);
		}
		case "accountDeleted":
			return compose("Your ForgeFluid account was deleted", [
				"Your ForgeFluid account and its sign-in methods were deleted. This address is free to use again."
			]);
		case "signUpAttempted":
			return compose("Someone tried to sign up with your address", [
				"Someone (perhaps you) tried to create a ForgeFluid account with this e-mail address. It already has an account, so nothing was created and nothing about your account changed.",
				'If it was you: sign in with your password. If you forgot it, ask for a new one on the sign-in page ("Forgot password"), or open ' +
					mail.resetLink +
					" and enter this address.",
				"If it was not you, you can ignore this message."
			]);
		case "orgInvitation":
			return compose(
				`You are invited to ${mail.orgName} on ForgeFluid`,
				[
					`${mail.inviter ?? "A member"} invited this address to join the organisation ${mail.orgName} on ForgeFluid as ${mail.role}.`,
					`Sign in (or create an account) with this address and confirm it, then accept. The link works once and expires in ${duration(mail.expiresInS)}.`,
					"If you do not know this organisation, ignore this message."
				],
				{ label: "Accept the invitation", link: mail.link }
			);
		case "billingPastDue": {
			const whose = mail.orgName ? `the organisation ${mail.orgName}` : "your account";
			return compose(
				"A ForgeFluid plan payment failed",
				[
					`The renewal payment of the ${mail.planTier} plan of ${whose} failed. The card will be tried again.`,
					`The plan stays in effect until ${mail.graceEndsAt}. If the payment has not gone through by then, ${whose} moves to the free tier until it does.`,
					"Update the payment method from the billing page to keep the plan."
				],
				{ label: "Open billing", link: mail.link }
			);
		}
		case "billingAutoTopUpFailed": {
			const whose = mail.orgName ? `the organisation ${mail.orgName}` : "your account";
			const why =
				mail.reason === "authentication_required"
					? "the card asked for authentication, which cannot be done without you"
					: mail.reason === "no_payment_method"
						? "no card is saved for payments without you"
						: "the card was declined";
			return compose(
				"ForgeFluid auto top-up failed and was turned off",
				[
					`The automatic purchase of the ${mail.packId} credit pack for ${whose} failed: ${why} (${mail.reason}).`,
					"Auto top-up is now off and will not be tried again by itself. Update the card from the billing page (or buy a pack once), then turn auto top-up on again."
				],
				{ label: "Open billing", link: mail.link }
			);
		}
		case "billingLowBalance": {
			const whose = mail.orgName ? `The organisation ${mail.orgName}` : "Your account";
			return compose(
				"ForgeFluid credit is running low",
				[
					`${whose} has ${mail.availableCredits} credits left, under the ${mail.thresholdCredits} credits you asked to be told about.`,
					"Tasks that need more than what is left are refused. Buy a credit pack, or turn on auto top-up, from the billing page."
				],
				{ label: "Open billing", link: mail.link }
			);
		}
		case "billingCapReached": {
			const whose = mail.orgName ? `the organisation ${mail.orgName}` : "your account";
			const cap = {
				member: `a member's monthly spend cap of ${mail.capCredits} credits on ${whose}`,
				key: `an API key's monthly spend cap of ${mail.capCredits} credits on ${whose}`,
				payer: `the monthly spend cap of ${mail.capCredits} credits of ${whose}`
			}[mail.scope];
			return compose(
				"A ForgeFluid spend cap was reached",
				[
					`Work was refused in ${mail.month} (UTC) because it would pass ${cap}.`,
					"Further work under that cap is refused until the month ends or the cap is raised."
				],
				{ label: "Open billing", link: mail.link }
			);
		}
	}
}
