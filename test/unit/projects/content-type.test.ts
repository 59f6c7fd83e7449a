import { contentTypeFor, isActiveContent } from "../../../src/projects/content-type";

const text = Buffer.from("hello\n");
const binary = Buffer.from([0x00, 0x01, 0xff]);

describe("contentTypeFor", () => {
	it.each([
		["README", text, "text/plain; charset=utf-8"],
		["notes.txt", text, "text/plain; charset=utf-8"],
		["Makefile", text, "text/plain; charset=utf-8"],
		["unknown.xyz", text, "text/plain; charset=utf-8"],
		["src/index.ts", text, "text/typescript; charset=utf-8"],
		["src/App.TSX", text, "text/typescript; charset=utf-8"],
		["lib/index.js", text, "text/javascript; charset=utf-8"],
		["package.json", text, "application/json; charset=utf-8"],
		["docs/guide.md", text, "text/markdown; charset=utf-8"],
		["index.html", text, "text/html; charset=utf-8"],
		["style.css", text, "text/css; charset=utf-8"],
		["config.yaml", text, "application/yaml; charset=utf-8"],
		["logo.png", binary, "image/png"],
		["photo.JPG", binary, "image/jpeg"],
		["font.woff2", binary, "font/woff2"],
		["doc.pdf", binary, "application/pdf"],
		["program", binary, "application/octet-stream"],
		["data.bin", binary, "application/octet-stream"],
		["fake.json", binary, "application/octet-stream"],
		[".png", binary, "application/octet-stream"],
		["dir.png/file", text, "text/plain; charset=utf-8"],
		["constructor", text, "text/plain; charset=utf-8"],
		["x.__proto__", text, "text/plain; charset=utf-8"]
	])("%s → %s", (path, content, expected) => {
		expect(contentTypeFor(path, content)).toBe(expected);
	});
});

describe("isActiveContent", () => {
	it("flags types a browser would run", () => {
		expect(isActiveContent("text/html; charset=utf-8")).toBe(true);
		expect(isActiveContent("image/svg+xml; charset=utf-8")).toBe(true);
		expect(isActiveContent("text/javascript; charset=utf-8")).toBe(true);
		expect(isActiveContent("text/plain; charset=utf-8")).toBe(false);
		expect(isActiveContent("image/png")).toBe(false);
	});
});
