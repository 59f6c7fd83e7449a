/** Response schemas of auto top-up (/billing/auto-topup) and low-balance notices (/billing/alerts). */
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

export const BillingAlertsView = Named("BillingAlerts", {
	lowBalanceCredits: Nullable(Count("the payer's own low-balance threshold; null = the default")),
	effectiveLowBalanceCredits: Count("the threshold in force; 0 = no low-balance notices"),
	defaultLowBalanceCredits: Count("BILLING_LOW_BALANCE_CREDITS"),
	below: Type.Boolean({ description: "whether the last check saw the available credit under the threshold" })
});
