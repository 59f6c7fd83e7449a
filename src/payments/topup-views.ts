/** The auto top-up setting's response schema (GET/PUT/DELETE /billing/auto-topup; src/payments/auto-topup.ts). */
import { Count, DateTime, Named, Nullable, Str, Type, Uuid } from "../http/schema";

export const AutoTopUpView = Named("AutoTopUp", {
	configured: Type.Boolean({ description: "whether the payer has a setting (false after DELETE)" }),
	enabled: Type.Boolean(),
	thresholdCredits: Nullable(Count("buy when a settlement leaves less available credit than this")),
	packId: Nullable(Str(64)),
	disabledReason: Nullable(
		Str(64, {
			description:
				"why it was turned off: authentication_required, card_declined, expired_card, incorrect_cvc, no_payment_method"
		})
	),
	disabledMessage: Nullable(Str(500)),
	disabledAt: Nullable(DateTime()),
	lastTriggeredAt: Nullable(DateTime("the last purchase attempt; the next waits BILLING_AUTO_TOPUP_WINDOW_S")),
	lastCheckoutId: Nullable(Uuid("the last attempt's checkout (GET /billing/checkout/:id)"))
});
