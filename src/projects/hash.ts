/** Content addressing: a blob's key is the lower-case hex SHA-256 of its bytes. */
import { createHash } from "node:crypto";
import { BlobIntegrityError } from "./errors";

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function sha256Hex(data: Uint8Array): string {
	return createHash("sha256").update(data).digest("hex");
}

export function isSha256Hex(value: unknown): value is string {
	return typeof value === "string" && SHA256_HEX.test(value);
}

/** Refuses keys that are not 64 lower-case hex digits: they reach file names and SQL. */
export function assertSha256Hex(value: unknown, field = "sha256"): asserts value is string {
	if (!isSha256Hex(value)) {
		const reason = "must be 64 lower-case hexadecimal digits";
		throw new BlobIntegrityError("BLOB_KEY_INVALID", `Invalid blob key: ${reason}`, { field, reason });
	}
}

/** Refuses data that does not hash to the key it is being stored under. */
export function verifyBlob(sha256: string, data: Uint8Array, field = "data"): void {
	assertSha256Hex(sha256);
	const actual = sha256Hex(data);
	if (actual !== sha256) {
		const reason = `data hashes to ${actual}, not ${sha256}`;
		throw new BlobIntegrityError("BLOB_HASH_MISMATCH", `Blob hash mismatch: ${reason}`, { field, reason });
	}
}
