/**
 * Small typed readers for request bodies: each failure names the field (OpenAI's `param`), so a
 * client sees which part of its request was refused. Tool and response schemas are compiled with
 * Ajv (JSON Schema draft 2020-12 and draft-07 keywords), so a schema that cannot compile is a 400
 * here and never an upstream error.
 */
import Ajv from "ajv";
import { invalid } from "./errors";

export type Json = Record<string, unknown>;

export const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

export function obj(v: unknown, param: string): Json {
	if (!isObj(v)) throw invalid(`'${param}' must be an object`, param);
	return v;
}

export function str(v: unknown, param: string, max = 10_000_000): string {
	if (typeof v !== "string") throw invalid(`'${param}' must be a string`, param);
	if (v.length > max) throw invalid(`'${param}' is longer than ${max} characters`, param);
	return v;
}

export function optStr(v: unknown, param: string, max?: number): string | undefined {
	return v === undefined || v === null ? undefined : str(v, param, max);
}

export function num(v: unknown, param: string, min: number, max: number, integer = false): number {
	if (typeof v !== "number" || !Number.isFinite(v)) throw invalid(`'${param}' must be a number`, param);
	if (integer && !Number.isInteger(v)) throw invalid(`'${param}' must be an integer`, param);
	if (v < min || v > max) throw invalid(`'${param}' must be between ${min} and ${max}`, param);
	return v;
}

export function optNum(v: unknown, param: string, min: number, max: number, integer = false): number | undefined {
	return v === undefined || v === null ? undefined : num(v, param, min, max, integer);
}

export function optBool(v: unknown, param: string): boolean | undefined {
	if (v === undefined || v === null) return undefined;
	if (typeof v !== "boolean") throw invalid(`'${param}' must be a boolean`, param);
	return v;
}

export function arr(v: unknown, param: string, max = 100_000): unknown[] {
	if (!Array.isArray(v)) throw invalid(`'${param}' must be an array`, param);
	if (v.length > max) throw invalid(`'${param}' has more than ${max} items`, param);
	return v;
}

/** Refuses any key not in `known` (the protocols reject unknown arguments; so do we, by name). */
export function onlyKnown(o: Json, known: ReadonlySet<string>, where: string) {
	for (const k of Object.keys(o))
		if (!known.has(k))
			throw invalid(
				`Unrecognized request argument supplied: ${where ? `${where}.` : ""}${k}`,
				where ? `${where}.${k}` : k,
				"unknown_parameter"
			);
}

const ajv = new Ajv({ strict: false, allErrors: false, validateSchema: true });

/** A JSON Schema that must compile (tool parameters, response schemas). */
export function jsonSchema(v: unknown, param: string): Json {
	const s = obj(v, param);
	try {
		// A schema's own $id would be registered in the shared instance; the check needs no identity.
		const { $id: _id, ...anonymous } = s;
		void _id;
		ajv.compile(anonymous);
	} catch (err) {
		throw invalid(
			`'${param}' is not a valid JSON Schema: ${(err as Error).message.slice(0, 300)}`,
			param,
			"invalid_schema"
		);
	}
	return s;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export function toolName(v: unknown, param: string): string {
	const n = str(v, param, 64);
	if (!TOOL_NAME.test(n)) throw invalid(`'${param}' must match ${TOOL_NAME.source}`, param);
	return n;
}
