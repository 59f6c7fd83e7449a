/** The payments service's settings, read from the environment (listed in .env.example and the README). */
import type { EnvReader } from "../config";

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface PaymentsConfig {}

export function loadPaymentsConfig(_r: EnvReader): PaymentsConfig {
	return {};
}
