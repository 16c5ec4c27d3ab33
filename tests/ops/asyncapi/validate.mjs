// Parses and validates an AsyncAPI document with the AsyncAPI parser; prints its diagnostics
// as JSON (severity 0 = error, 1 = warning, 2 = information, 3 = hint).
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"));
const found = diagnostics.map((d) => ({
  code: d.code,
  severity: d.severity,
  message: d.message,
  path: d.path,
}));
process.stdout.write(
  JSON.stringify({
    parsed: document !== undefined,
    channels: document ? document.channels().length : 0,
    messages: document ? document.allMessages().length : 0,
    diagnostics: found,
  }),
);
