// Checks Kubernetes objects against the API's OpenAPI schema, offline:
// kubectl's own validation needs a cluster (client-side dry-run downloads
// the schema from the API server), so tests/ops/kubernetes_test.py uses the
// validators that the npm package kubernetes-models compiles from the
// Kubernetes OpenAPI (types, formats, enums, required fields).
//
//   node kubernetes_schema.mjs NODE_MODULES OBJECTS.json
//
// NODE_MODULES holds kubernetes-models (imported by path: ES modules do not
// search NODE_PATH or npm's global folder). OBJECTS.json is a JSON array of
// objects. Prints "ok: Kind/name" or "FAIL: Kind/name: reason" for each;
// exit status 0 if all are valid, 1 otherwise.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
if (!modules || !file) {
  console.log("usage: node kubernetes_schema.mjs NODE_MODULES OBJECTS.json");
  process.exit(2);
}
const objects = JSON.parse(readFileSync(file, "utf8"));
let failed = 0;
for (const object of objects) {
  const what = `${object.kind}/${object.metadata?.name}`;
  // "apps/v1" is the group apps, version v1; "v1" is the core group, which
  // kubernetes-models keeps at its top level.
  const slash = object.apiVersion.lastIndexOf("/");
  const group = slash < 0 ? "" : object.apiVersion.slice(0, slash);
  const version = object.apiVersion.slice(slash + 1);
  // 5.x ships ES modules as .js; 4.x ships CommonJS .js beside .mjs.
  const base = join(modules, "kubernetes-models", group, version, object.kind);
  const path = [`${base}.mjs`, `${base}.js`].find(existsSync);
  if (!path) {
    console.log(`FAIL: ${what}: kubernetes-models has no ${object.apiVersion} ${object.kind} (${base}.js)`);
    failed++;
    continue;
  }
  const module = await import(pathToFileURL(path).href);
  const Model = module[object.kind] ?? module.default?.[object.kind];
  try {
    new Model(object).validate();
    console.log(`ok: ${what} (${object.apiVersion})`);
  } catch (error) {
    console.log(`FAIL: ${what}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
