// Reference tokenizer for the parity test: @huggingface/tokenizers (pure JS) on a local
// tokenizer.json. Usage: node tokenize.js TOKENIZER_JSON [TOKENIZER_CONFIG_JSON] < strings.json
// stdin: a JSON array of strings; stdout: a JSON array of {ids, decoded} in the same order
// (ids without BOS/EOS; decoded = decode(ids) with special tokens kept). Reads no network.
"use strict";
const fs = require("fs");
const { Tokenizer } = require("@huggingface/tokenizers");

function main() {
  const args = process.argv.slice(2);
  if (args.length < 1 || args.length > 2) {
    process.stderr.write("usage: node tokenize.js TOKENIZER_JSON [TOKENIZER_CONFIG_JSON] < strings.json\n");
    process.exit(2);
  }
  const tokenizerJson = JSON.parse(fs.readFileSync(args[0], "utf8"));
  const config = args[1] ? JSON.parse(fs.readFileSync(args[1], "utf8")) : {};
  const tok = new Tokenizer(tokenizerJson, config);
  const strings = JSON.parse(fs.readFileSync(0, "utf8"));
  const out = strings.map((s) => {
    const ids = tok.encode(s, { add_special_tokens: false }).ids;
    return { ids, decoded: tok.decode(ids, { skip_special_tokens: false }) };
  });
  process.stdout.write(JSON.stringify(out) + "\n");
}

main();
