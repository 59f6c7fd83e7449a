/**
 * The Swagger UI page in a real browser: headless Debian Chromium driven by playwright-core loads
 * /api/docs, fetches /api/openapi.json and renders one operation per route. Every asset comes from
 * the gateway itself (no CDN): any request to another origin fails the test.
 */
import { chromium, Browser } from "playwright-core";
import { createApiService } from "../../../services/api.service";
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import { PROBE_ROUTES, ProbeService } from "../../support/fixtures";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let browser: Browser;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: [],
		extraServices: [createApiService({ routes: PROBE_ROUTES }), ProbeService]
	});
	browser = await chromium.launch({
		executablePath: "/usr/bin/chromium",
		args: [
			"--headless",
			"--no-sandbox",
			"--disable-gpu",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
			"--no-first-run",
			"--disable-quic"
		]
	});
});
afterAll(async () => {
	await browser?.close();
	await node?.stop();
	await db?.drop();
});

test("Swagger UI lists the routes of the OpenAPI document, with local assets only", async () => {
	const page = await browser.newPage();
	const foreign: string[] = [];
	page.on("request", req => {
		if (!req.url().startsWith(node.baseUrl) && !req.url().startsWith("data:")) foreign.push(req.url());
	});
	await page.goto(`${node.baseUrl}/api/docs`, { waitUntil: "networkidle" });
	await page.waitForSelector(".opblock", { timeout: 20_000 });

	const doc = (await (await fetch(`${node.baseUrl}/api/openapi.json`)).json()) as {
		paths: Record<string, Record<string, unknown>>;
	};
	const expected = Object.entries(doc.paths)
		.flatMap(([p, ops]) => Object.keys(ops).map(m => `${m.toUpperCase()} ${p}`))
		.sort();
	const shown = (
		await page.$$eval(".opblock-summary", els =>
			els.map(el => {
				const method = el.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "";
				const path =
					el.querySelector(".opblock-summary-path")?.getAttribute("data-path") ??
					el.querySelector(".opblock-summary-path")?.textContent?.trim() ??
					"";
				return `${method} ${path.replace(/\u200b/g, "")}`;
			})
		)
	).sort();
	expect(shown).toEqual(expected);
	expect(shown).toContain("POST /api/v1/probe/echo");
	expect(await page.title()).toBe("ForgeFluid API");
	expect(foreign).toEqual([]);
	await page.screenshot({ path: "/tmp/forgefluid-docs.png" }).catch(() => undefined);
});
