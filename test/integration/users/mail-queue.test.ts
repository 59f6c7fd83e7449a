/**
 * Durable account mail over SMTP: a real nodemailer → smtp-server exchange where the peer first
 * refuses (451 on RCPT), then accepts. The message waits in PostgreSQL's mail_outbox with its
 * attempts and error, survives its node stopping, and is delivered once by the next node.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { httpClient } from "./http";

jest.setTimeout(120_000);

let refusing = true;
let refusals = 0;
const inbox: ParsedMail[] = [];
let smtp: SMTPServer;
let db: TestDatabase;
let node: (ForgeNode & { baseUrl: string }) | null = null;
const call = httpClient(() => node!.baseUrl);

const startNode = (port: number) =>
	startTestNode({
		db,
		services: ["api", "users"],
		env: {
			SMTP_URL: `smtp://127.0.0.1:${port}`,
			MAIL_FROM: "ForgeFluid <accounts@forge.test>",
			MAIL_QUEUE_POLL_MS: "200",
			MAIL_RETRY_BASE_S: "1",
			MAIL_RETRY_MAX_S: "2"
		}
	});

const queued = (to: string) =>
	runtimeOf(node!.broker).sequelize.query<{ attempts: number; last_error: string | null; failed_at: Date | null }>(
		`SELECT attempts, last_error, failed_at FROM mail_outbox WHERE to_address = $1`,
		{ bind: [to], type: QueryTypes.SELECT }
	);

let smtpPort = 0;

beforeAll(async () => {
	smtp = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS"],
		logger: false,
		onRcptTo(_address, _session, done) {
			if (!refusing) return done();
			refusals++;
			const err = Object.assign(new Error("Mailbox temporarily unavailable"), { responseCode: 451 });
			done(err);
		},
		onData(stream, _session, done) {
			simpleParser(stream)
				.then(mail => {
					inbox.push(mail);
					done();
				})
				.catch(done);
		}
	});
	smtp.listen(0, "127.0.0.1");
	await once(smtp.server, "listening");
	smtpPort = (smtp.server.address() as AddressInfo).port;
	db = await createTestDatabase();
	node = await startNode(smtpPort);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await new Promise<void>(resolve => smtp.close(() => resolve()));
});

test("refused mail waits in the queue with its error, outlives its node, and is sent once the peer accepts", async () => {
	const email = `${uniqueId("q")}@example.com`;
	const r = await call("POST", "/api/v1/auth/register", {
		body: { email, password: "correct horse battery staple" }
	});
	expect([201, 202]).toContain(r.status);
	// Refused at least twice (the retry backs off), and still queued with the peer's answer.
	await eventually(async () => refusals >= 2 && (await queued(email))[0]?.attempts >= 2, 20_000);
	const [row] = await queued(email);
	expect(row.last_error).toMatch(/451/);
	expect(row.failed_at).toBeNull();
	expect(inbox).toHaveLength(0);

	// The node goes away while the peer still refuses; the message stays in PostgreSQL.
	await node!.stop();
	node = null;
	refusing = false;
	node = await startNode(smtpPort);
	await eventually(async () => inbox.some(m => m.subject === "Confirm your e-mail address"), 20_000);
	expect(inbox.filter(m => m.subject === "Confirm your e-mail address")).toHaveLength(1);
	const [delivered] = inbox;
	expect(delivered.to && !Array.isArray(delivered.to) ? delivered.to.value[0].address : null).toBe(email);
	expect(delivered.text).toMatch(/\/verify-email\?token=fft_/);
	// Sent rows are deleted (their links hold single-use tokens).
	await eventually(async () => (await queued(email)).length === 0, 10_000);
});
