/**
 * The contract between the configuration loader (src/config.ts) and each domain's own settings
 * (src/<domain>/config.ts). A leaf: the loader implements it and the domains read through it, and it
 * imports neither.
 */
export type Env = Record<string, string | undefined>;

/** Typed readers over the environment; each records a problem naming the variable instead of throwing. */
export interface EnvReader {
	env: Env;
	problems: string[];
	str(name: string, def: string): string;
	optStr(name: string): string | null;
	optUrl(name: string, schemes: string[]): string | null;
	int(name: string, def: number, min: number, max: number): number;
	bool(name: string, def: boolean): boolean;
	oneOf<T extends string>(name: string, def: T, allowed: readonly T[]): T;
}
