// Validates every constrained-generation output (JSON lines {schema, output} written by
// grammar_generation_test) against its schema with ajv, an independent validator. Exits 1 naming
// each output that does not parse or does not validate.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [outputsPath] = process.argv.slice(2);
const lines = readFileSync(outputsPath, "utf8").split("\n").filter((line) => line.length > 0);
if (lines.length === 0) {
  console.error(`${outputsPath} holds no outputs`);
  process.exit(1);
}
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const validators = new Map();
let failures = 0;
for (const line of lines) {
  const { schema, output } = JSON.parse(line);
  if (!validators.has(schema)) validators.set(schema, ajv.compile(JSON.parse(readFileSync(schema, "utf8"))));
  const validate = validators.get(schema);
  let instance;
  try {
    instance = JSON.parse(output);
  } catch (error) {
    console.error(`FAIL ${schema}: output does not parse (${error.message}): ${output}`);
    failures++;
    continue;
  }
  if (!validate(instance)) {
    console.error(`FAIL ${schema}: ${ajv.errorsText(validate.errors)}: ${output}`);
    failures++;
  }
}
console.log(`${lines.length - failures} of ${lines.length} outputs valid (ajv)`);
process.exit(failures === 0 ? 0 : 1);
