// Bundles the page: dapp/src/main.js -> dapp/dist/app.js (ESM, minified, for browsers), and
// records the bundle's size and gzipped size in dapp/dist/size.json.
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist", "app.js");
mkdirSync(join(here, "dist"), { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.js")],
  outfile: out,
  bundle: true,
  format: "esm",
  minify: true,
  platform: "browser",
  target: ["es2022"],
  legalComments: "none",
  logLevel: "warning",
});
const code = readFileSync(out);
const size = { bytes: code.length, gzip_bytes: gzipSync(code, { level: 9 }).length };
writeFileSync(join(here, "dist", "size.json"), JSON.stringify(size) + "\n");
const kib = (n) => (n / 1024).toFixed(1);
console.log(`dapp/dist/app.js: ${kib(size.bytes)} KiB, ${kib(size.gzip_bytes)} KiB gzipped`);
