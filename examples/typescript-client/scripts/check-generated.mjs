// Fails when src/schema.d.ts is not what `npm run generate` makes of ../../openapi.yaml.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "pawtropolis-schema-"));
const fresh = join(dir, "schema.d.ts");
try {
  execFileSync(
    process.execPath,
    ["node_modules/openapi-typescript/bin/cli.js", "../../openapi.yaml", "--output", fresh],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const committed = readFileSync("src/schema.d.ts", "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error("src/schema.d.ts is stale: run `npm run generate` in examples/typescript-client");
    process.exit(1);
  }
  console.log("src/schema.d.ts matches openapi.yaml");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
