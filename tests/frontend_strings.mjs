// Format every string of translation files the way Home Assistant's frontend does.
//
//   node tests/frontend_strings.mjs NODE_TOOLS FILE.json...
//
// NODE_TOOLS is the folder scripts/setup installed intl-messageformat into. The frontend builds
// `new IntlMessageFormat(text, language)` for each string (a syntax error there shows as
// "Translation error: INVALID_TAG") and formats it with the placeholders' values (an error there
// shows as "Translation Error: ..."). This script does both, with a dummy value for each
// placeholder, and prints one JSON object per problem ({"file", "key", "error"}), then one with
// the number of strings it formatted ({"checked"}), so that a run over nothing cannot pass.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join, resolve } from "node:path";

const [tools, ...files] = process.argv.slice(2);
if (!tools || files.length === 0) {
  console.error("usage: node tests/frontend_strings.mjs NODE_TOOLS FILE.json...");
  process.exit(2);
}
const require = createRequire(join(resolve(tools), "package.json"));
const { IntlMessageFormat } = require("intl-messageformat");
const { TYPE } = require("@formatjs/icu-messageformat-parser");

// A value for each placeholder the message reads; tags get none, as in the frontend.
function dummyValues(elements, values) {
  for (const element of elements) {
    switch (element.type) {
      case TYPE.argument:
        values[element.value] = "x";
        break;
      case TYPE.number:
      case TYPE.plural:
        values[element.value] = 1;
        break;
      case TYPE.date:
      case TYPE.time:
        values[element.value] = new Date(0);
        break;
      case TYPE.select:
        values[element.value] = "other";
        break;
      default:
        break;
    }
    if (element.options) {
      for (const option of Object.values(element.options)) dummyValues(option.value, values);
    }
    if (element.children) dummyValues(element.children, values);
  }
  return values;
}

function* strings(tree, prefix) {
  for (const [name, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${name}` : name;
    if (typeof value === "string") yield [path, value];
    else if (value && typeof value === "object") yield* strings(value, path);
  }
}

let problems = 0;
let checked = 0;
for (const file of files) {
  // de.json is read in German, en.json in English: plural rules follow the language.
  const language = basename(file, ".json");
  const tree = JSON.parse(readFileSync(file, "utf-8"));
  for (const [key, text] of strings(tree, "")) {
    checked += 1;
    let error = null;
    try {
      const message = new IntlMessageFormat(text, language);
      const formatted = message.format(dummyValues(message.getAst(), {}));
      if (typeof formatted !== "string") error = "formats to parts, not to a string";
    } catch (err) {
      error = `${err.name}: ${err.message}`;
    }
    if (error !== null) {
      problems += 1;
      console.log(JSON.stringify({ file: basename(file), key, error }));
    }
  }
}
console.log(JSON.stringify({ checked }));
process.exit(problems === 0 ? 0 : 1);
