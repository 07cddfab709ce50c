// Copies the repo's proto (../../proto) into this package, where the client loads it at run time.
const fs = require("node:fs");
const path = require("node:path");

const from = path.resolve(__dirname, "..", "..", "..", "proto", "gateway", "v1", "gateway.proto");
const to = path.resolve(__dirname, "..", "proto", "gateway", "v1", "gateway.proto");
fs.mkdirSync(path.dirname(to), { recursive: true });
fs.copyFileSync(from, to);
