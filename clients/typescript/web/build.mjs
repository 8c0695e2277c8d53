// `npm run build:web`: bundles the browser arena (web/main.ts with the
// library and @bufbuild/protobuf) into dist/browser/arena.js with esbuild,
// and copies index.html beside it. `test-client web` serves that directory.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "dist", "browser");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "web", "main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  sourcemap: true,
  outfile: join(out, "arena.js"),
  logLevel: "warning",
});
copyFileSync(join(root, "web", "index.html"), join(out, "index.html"));
console.log(`browser arena bundled into ${out}`);
